//! An optional call to another service within a time budget: what a caller
//! does when the other service's answer improves its own but must never hold it
//! up (the gateway's page experience, delivery asking loyalty for tier benefits).
//!
//! [`within`] runs the call for at most its budget and says which of three
//! things happened: the peer answered, it could not be reached (or failed), or
//! it did not answer in time. [`budget`] takes the smaller of a part's own
//! budget and what remains of the caller's deadline, and [`caller_deadline`]
//! reads that deadline from the caller's `grpc-timeout`.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::MetadataMap;
use tonic::{Code, Response, Status};

/// What became of an optional peer call.
#[derive(Debug)]
pub enum Within<T> {
    /// The peer answered in time.
    Answered(T),
    /// The peer answered in time with an error of its own (NOT_FOUND,
    /// FAILED_PRECONDITION, ...): a real answer the caller may act on.
    Refused(Status),
    /// The peer could not be reached or failed (UNAVAILABLE, INTERNAL, an
    /// unreadable answer, a transport error): its part is missing, not denied.
    Unavailable(Status),
    /// No answer within the budget; the call was dropped, which cancels it.
    TimedOut,
}

impl<T> Within<T> {
    /// The answer, when the peer gave one in time.
    pub fn answered(self) -> Option<T> {
        match self {
            Self::Answered(value) => Some(value),
            Self::Refused(_) | Self::Unavailable(_) | Self::TimedOut => None,
        }
    }

    /// The peer's refusal, when it answered in time with one of its own errors.
    pub fn refusal(&self) -> Option<&Status> {
        match self {
            Self::Refused(status) => Some(status),
            Self::Answered(_) | Self::Unavailable(_) | Self::TimedOut => None,
        }
    }

    /// The answer mapped by `f`, keeping what else happened.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Within<U> {
        match self {
            Self::Answered(value) => Within::Answered(f(value)),
            Self::Refused(status) => Within::Refused(status),
            Self::Unavailable(status) => Within::Unavailable(status),
            Self::TimedOut => Within::TimedOut,
        }
    }
}

/// Codes that mean "the peer's part is missing", as opposed to an answer.
fn is_unavailability(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Internal
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::ResourceExhausted
            | Code::Unimplemented
            | Code::DataLoss
    )
}

/// Runs `call` (a generated client's call) for at most `budget`. Give the
/// request the same budget as its `grpc-timeout` (`Request::set_timeout`), so
/// the peer stops working on it too.
pub async fn within<T>(
    budget: Duration,
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Within<T> {
    match tokio::time::timeout(budget, call).await {
        Ok(Ok(response)) => Within::Answered(response.into_inner()),
        Ok(Err(status)) if is_unavailability(status.code()) => Within::Unavailable(status),
        Ok(Err(status)) => Within::Refused(status),
        Err(_) => Within::TimedOut,
    }
}

/// The time a part may take: its own `part` budget, or what remains until
/// `deadline` less `margin` (kept for composing and sending the answer) when
/// that is shorter. Zero when the deadline has (nearly) passed.
pub fn budget(part: Duration, deadline: Option<Instant>, margin: Duration) -> Duration {
    match deadline {
        Some(deadline) => part.min(
            deadline
                .saturating_duration_since(Instant::now())
                .saturating_sub(margin),
        ),
        None => part,
    }
}

/// The caller's deadline from its `grpc-timeout` metadata, counted from now
/// (call it first thing in a handler); `None` when the caller set none or the
/// value is not a valid gRPC timeout.
pub fn caller_deadline(metadata: &MetadataMap) -> Option<Instant> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    Some(Instant::now() + parse_grpc_timeout(value)?)
}

/// Parses a gRPC timeout: 1 to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_in_time_is_answered() {
        let answer = within(Duration::from_secs(1), async { Ok(Response::new(7)) }).await;
        assert!(matches!(answer, Within::Answered(7)));
    }

    #[tokio::test]
    async fn not_found_is_a_refusal_and_unavailable_is_unavailability() {
        let refused = within::<()>(Duration::from_secs(1), async {
            Err(Status::not_found("no account"))
        })
        .await;
        assert!(matches!(refused, Within::Refused(s) if s.code() == Code::NotFound));
        let down = within::<()>(Duration::from_secs(1), async {
            Err(Status::unavailable("down"))
        })
        .await;
        assert!(matches!(down, Within::Unavailable(s) if s.code() == Code::Unavailable));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_slower_than_its_budget_times_out() {
        let answer = within(Duration::from_millis(50), async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(Response::new(()))
        })
        .await;
        assert!(matches!(answer, Within::TimedOut));
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_is_the_smaller_of_the_part_and_the_deadline() {
        let part = Duration::from_millis(300);
        let margin = Duration::from_millis(5);
        assert_eq!(budget(part, None, margin), part);
        let soon = Instant::now() + Duration::from_millis(105);
        assert_eq!(budget(part, Some(soon), margin), Duration::from_millis(100));
        let later = Instant::now() + Duration::from_secs(5);
        assert_eq!(budget(part, Some(later), margin), part);
        let passed = Instant::now();
        assert_eq!(budget(part, Some(passed), margin), Duration::ZERO);
    }

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("4S"), Some(Duration::from_secs(4)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("99u"), Some(Duration::from_micros(99)));
        assert_eq!(
            parse_grpc_timeout("12345678n"),
            Some(Duration::from_nanos(12_345_678))
        );
        for bad in ["", "m", "123456789m", "12x", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
