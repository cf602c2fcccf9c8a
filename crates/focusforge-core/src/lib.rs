//! Foundation types shared by every FocusForge crate: user ids, resource ids,
//! the clock, the error model and request validation. Nothing here knows about
//! gRPC or any database.

mod clock;
mod error;
mod grpc_timeout;
mod ids;
mod schedule;
mod validate;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, FieldViolation, Result};
pub use grpc_timeout::{format_grpc_timeout, parse_grpc_timeout};
pub use ids::{UserId, check_id, new_id};
pub use schedule::{AfterFailure, Priority, RetryError, RetryPolicy};
pub use validate::Violations;
