//! Properties over random fault schedules.
