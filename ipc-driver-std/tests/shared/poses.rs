//! The plain-old-data types both drivers' typed tests publish (included with `#[path]`; the
//! including file imports `Cow`, `Pod`, `Zeroable` and `TypeName` from its driver).

use super::{Cow, Pod, TypeName, Zeroable};

#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct Pose {
    pub(crate) x: f64,
    pub(crate) y: f64,
    pub(crate) heading: f64,
    pub(crate) stamp: u64,
}
impl TypeName for Pose {}

/// The same size as `Pose`, another name.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct Twist {
    pub(crate) v: [f64; 3],
    pub(crate) stamp: u64,
}
impl TypeName for Twist {
    fn type_name() -> Cow<'static, str> {
        "robot.Twist/1".into()
    }
}
