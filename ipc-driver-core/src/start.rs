//! How every driver starts a node: the group's directory opened, the node's id drawn, its
//! data listener bound (not an observer's), and its member told to join.

use std::io;
use std::path::Path;
use std::time::Instant;

use ipc_os::rendezvous::{DataSocket, GroupDir, RendezvousError};
use ipc_proto::{
    CmdError, ConfigError, Member, MemberCmd, MemberInput, NodeId, NodeOptions, SpokeCmd,
};

use crate::random_seed;

/// A node that has started joining its group: what a driver builds its loop around.
#[derive(Debug)]
pub struct Started {
    /// The group's directory.
    pub dir: GroupDir,
    /// Whether only this user may join (see [`NodeOptions::is_private`]).
    pub private: bool,
    /// The node's id: odd, random.
    pub id: NodeId,
    /// The node's data listener; `None` for an observer.
    pub data_listener: Option<DataSocket>,
    /// The member, told to join.
    pub member: Member,
    /// The largest data record the member accepts (0 for an observer).
    pub max_record: usize,
}

/// Starts a node of `group` (in `base`, or this user's private runtime directory) with
/// `options`; `now` is the driver's clock reading. The node's id and the member's seed come
/// from the OS.
pub fn start<E>(
    options: &NodeOptions,
    group: &str,
    base: Option<&Path>,
    observer: bool,
    now: Instant,
) -> Result<Started, E>
where
    E: From<RendezvousError> + From<io::Error> + From<CmdError> + From<ConfigError>,
{
    options.check()?;
    let private = options.is_private(ipc_os::current_credentials().uid);
    let dir = GroupDir::open(group, base, private)?;
    let id = NodeId::new(random_seed() | 1).expect("odd, hence non-zero");
    let data_listener = if observer {
        None
    } else {
        Some(dir.listen_data(id.get())?)
    };
    let data_addr = data_listener.as_ref().map(|l| l.addr().to_owned());
    let config = options.member_config(id, data_addr, random_seed());
    let max_record = config.data.as_ref().map_or(0, |d| d.limits.max_record);
    let mut member = Member::new(config, now);
    member.handle(now, MemberInput::Cmd(MemberCmd::Spoke(SpokeCmd::Join)))?;
    Ok(Started {
        dir,
        private,
        id,
        data_listener,
        member,
        max_record,
    })
}
