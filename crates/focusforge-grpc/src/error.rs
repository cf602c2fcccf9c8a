use std::collections::HashMap;

use focusforge_core::{Error, FieldViolation, Violations};
use focusforge_proto::ERROR_DOMAIN;
use focusforge_proto::common::v1::ErrorReason;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Another service's answer as this one's domain error, for executors and
/// jobs that call services: the caller's mistakes stay theirs
/// (`params` names the action's input), a refused identity is this
/// process's fault, anything else may pass on a retry.
pub fn from_status(s: &Status) -> Error {
    let message = s.message().to_owned();
    match s.code() {
        Code::InvalidArgument => Error::invalid("params", message),
        Code::NotFound => Error::NotFound(message),
        Code::FailedPrecondition => Error::FailedPrecondition(message),
        Code::Unimplemented => Error::Unimplemented(message),
        Code::Unauthenticated | Code::PermissionDenied => Error::Internal(message),
        _ => Error::Unavailable(message),
    }
}

/// The one place domain errors become gRPC statuses. Client mistakes carry
/// `google.rpc` details (field violations, an `ErrorInfo` reason); internal
/// errors are logged in the request's span and sent as a bare `internal`.
pub fn into_status(err: Error) -> Status {
    let reason = |r: ErrorReason| {
        ErrorDetails::with_error_info(r.as_str_name(), ERROR_DOMAIN, HashMap::new())
    };
    match err {
        Error::InvalidArgument(violations) => {
            let violations = bounded(violations);
            let message = err_message(&violations);
            let mut details = reason(ErrorReason::InvalidField);
            for v in violations {
                details.add_bad_request_violation(v.field, v.description);
            }
            Status::with_error_details(Code::InvalidArgument, message, details)
        }
        Error::NotFound(what) => Status::with_error_details(
            Code::NotFound,
            format!("{what} not found"),
            reason(ErrorReason::NotFound),
        ),
        Error::AlreadyExists(what) => Status::already_exists(format!("{what} already exists")),
        Error::FailedPrecondition(msg) => {
            Status::with_error_details(Code::FailedPrecondition, msg, reason(ErrorReason::BadState))
        }
        e @ Error::VersionMismatch { .. } => Status::with_error_details(
            Code::Aborted,
            e.to_string(),
            reason(ErrorReason::VersionMismatch),
        ),
        Error::Unimplemented(msg) => Status::unimplemented(msg),
        Error::ResourceExhausted(msg) => Status::resource_exhausted(msg),
        Error::Unavailable(msg) => {
            tracing::warn!(error = %msg, "dependency unavailable");
            Status::unavailable(msg)
        }
        Error::Internal(msg) => {
            tracing::error!(error = %msg, "internal error");
            Status::internal("internal error")
        }
    }
}

/// Longest field path and description sent, in bytes.
const FIELD_BYTES: usize = 128;
const DESCRIPTION_BYTES: usize = 256;
/// Bytes of field violations in one error's details, before base64: the
/// whole error stays well under the 8 KiB of metadata clients accept.
const DETAILS_BUDGET: usize = 4096;
/// Fields named in `grpc-message`; the details name them all.
const MESSAGE_FIELDS: usize = 5;
const MESSAGE_FIELD_BYTES: usize = 64;

/// `text` cut to at most `max` bytes at a character boundary.
fn clip(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max.saturating_sub(3);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// The violations an error reports: each clipped, at most
/// [`Violations::MAX_REPORTED`] of them within [`DETAILS_BUDGET`], and
/// one more counting those left out.
fn bounded(violations: Vec<FieldViolation>) -> Vec<FieldViolation> {
    let mut out = Vec::new();
    let mut used = 0;
    let mut left_out = 0;
    for v in violations {
        if let Some(n) = v.not_shown() {
            left_out += n;
            continue;
        }
        let v = FieldViolation {
            field: clip(v.field, FIELD_BYTES),
            description: clip(v.description, DESCRIPTION_BYTES),
        };
        let size = v.field.len() + v.description.len();
        if out.len() >= Violations::MAX_REPORTED || used + size > DETAILS_BUDGET {
            left_out += 1;
            continue;
        }
        used += size;
        out.push(v);
    }
    if left_out > 0 {
        out.push(FieldViolation::not_shown_count(left_out));
    }
    out
}

fn err_message(violations: &[FieldViolation]) -> String {
    let named: Vec<&FieldViolation> = violations
        .iter()
        .filter(|v| v.not_shown().is_none())
        .collect();
    let mut fields: Vec<String> = named
        .iter()
        .take(MESSAGE_FIELDS)
        .map(|v| clip(v.field.clone(), MESSAGE_FIELD_BYTES))
        .collect();
    let more = named.len().saturating_sub(MESSAGE_FIELDS)
        + violations
            .iter()
            .filter_map(FieldViolation::not_shown)
            .sum::<usize>();
    if more > 0 {
        fields.push(format!("and {more} more"));
    }
    format!("invalid {}", fields.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_arguments_carry_field_violations() {
        let status = into_status(Error::InvalidArgument(vec![
            focusforge_core::FieldViolation {
                field: "title".into(),
                description: "must not be empty".into(),
            },
            focusforge_core::FieldViolation {
                field: "blocks[0].minutes".into(),
                description: "too big".into(),
            },
        ]));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "invalid title, blocks[0].minutes");
        let bad = status
            .get_details_bad_request()
            .expect("bad request details");
        let fields: Vec<_> = bad
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["title", "blocks[0].minutes"]);
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(info.reason, "ERROR_REASON_INVALID_FIELD");
        assert_eq!(info.domain, ERROR_DOMAIN);
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let status = into_status(Error::Internal("disk on fire at /var/secret".into()));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn each_kind_has_its_code() {
        assert_eq!(
            into_status(Error::NotFound("task".into())).code(),
            Code::NotFound
        );
        assert_eq!(
            into_status(Error::FailedPrecondition("x".into())).code(),
            Code::FailedPrecondition
        );
        assert_eq!(
            into_status(Error::VersionMismatch {
                expected: 1,
                actual: 2
            })
            .code(),
            Code::Aborted
        );
        assert_eq!(
            into_status(Error::Unavailable("x".into())).code(),
            Code::Unavailable
        );
        assert_eq!(
            into_status(Error::AlreadyExists("x".into())).code(),
            Code::AlreadyExists
        );
    }
}
