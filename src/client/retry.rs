//! The pieces every retried operation shares: the exponential [`Backoff`]
//! bounded by the operation's deadline, and [`Failure`], an attempt's
//! failure sorted into "worth another attempt" and "return it now".
//!
//! An operation owns one deadline (its start plus
//! [`super::ClientOptions::timeout`]); every wait and every attempt ends by
//! it, so no operation outlives it by more than the time to notice.

use std::time::Duration;

use tokio::time::Instant;

use super::errors::Error;

/// Why one attempt failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Another attempt may succeed (an unreachable store or scheduler, a
    /// region error, no region for the key yet); the text says what
    /// happened, for the log and for [`Error::Timeout`].
    Retry(String),
    /// No retry can fix it.
    Fatal(Error),
}

/// Whether a gRPC status means the call may never have reached its server,
/// or its answer was lost: no connection, the connection broke, or no
/// answer in time. Those are retried (elsewhere); any other status is the
/// server's considered answer and is returned.
///
/// tonic reports a refused or broken connection as `UNAVAILABLE` (or
/// `CANCELLED`), and a local failure it cannot classify as `UNKNOWN` with
/// the underlying error as its source; a server never sends a source.
pub(crate) fn is_transport_error(status: &tonic::Status) -> bool {
    use tonic::Code;
    match status.code() {
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded => true,
        Code::Unknown => std::error::Error::source(status).is_some(),
        _ => false,
    }
}

/// Exponential backoff: `min`, `2 min`, `4 min`, ... up to `max`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// A backoff starting at `min` and growing to `max`.
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Backoff { next: min, max }
    }

    /// The next delay (at least `at_least`), doubling the one after.
    fn next_delay(&mut self, at_least: Duration) -> Duration {
        let delay = self.next.max(at_least);
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Sleeps for the next delay (at least `at_least`, for a server that
    /// asked for it) and doubles the delay. Returns `false` without
    /// sleeping if the wait would end past `deadline`: the operation has
    /// no time left for another attempt.
    pub(crate) async fn wait(&mut self, deadline: Instant, at_least: Duration) -> bool {
        let delay = self.next_delay(at_least);
        if Instant::now() + delay >= deadline {
            return false;
        }
        tokio::time::sleep(delay).await;
        true
    }
}

/// What an operation's attempts have failed with, for its
/// [`Error::Timeout`].
#[derive(Debug, Default)]
pub(crate) struct Failures {
    last: Option<String>,
}

impl Failures {
    /// Records the failure of an attempt. An attempt that ends after the
    /// deadline may have been cut short by it, and its failure ("no
    /// answer within 2ms") says less than the one before; both are kept.
    pub(crate) fn record(&mut self, reason: &str, deadline: Instant) {
        self.last = Some(match self.last.take() {
            Some(previous) if Instant::now() >= deadline && previous != reason => {
                format!("{previous}; then {reason}")
            }
            _ => reason.to_owned(),
        });
    }

    /// The operation's timeout error.
    pub(crate) fn timeout(&self, op: &'static str, timeout: Duration) -> Error {
        Error::Timeout {
            op,
            timeout,
            last: self
                .last
                .clone()
                .unwrap_or_else(|| "no attempt was made".to_owned()),
        }
    }
}

/// The time left until `deadline`, capped at `attempt`: how long one
/// attempt may take.
pub(crate) fn attempt_timeout(deadline: Instant, attempt: Duration) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .min(attempt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_backoff_doubles_up_to_max_and_honours_a_longer_ask() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(100), ms(300));
        let delays: Vec<Duration> = (0..4).map(|_| backoff.next_delay(ms(0))).collect();
        assert_eq!(delays, [ms(100), ms(200), ms(300), ms(300)]);
        assert_eq!(
            backoff.next_delay(ms(1000)),
            ms(1000),
            "the server's ask wins"
        );
        assert_eq!(backoff.next_delay(ms(0)), ms(300));
    }

    #[tokio::test]
    async fn test_backoff_sleeps_and_refuses_a_wait_past_the_deadline() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(20), ms(2000));
        let start = Instant::now();
        assert!(backoff.wait(start + Duration::from_secs(60), ms(0)).await);
        assert!(start.elapsed() >= ms(20), "it slept the delay");
        // The next delay (40 ms, asked up to 2 s) ends past a deadline 1 s away.
        let start = Instant::now();
        assert!(!backoff.wait(start + ms(1000), ms(2000)).await);
        assert!(start.elapsed() < ms(1000), "refused without sleeping");
    }

    #[test]
    fn test_failures_keep_the_one_before_a_cut_attempt() {
        let mut failures = Failures::default();
        let later = Instant::now() + Duration::from_secs(60);
        failures.record("busy", later);
        failures.record("stale", later);
        let Error::Timeout { last, .. } = failures.timeout("RawGet", Duration::ZERO) else {
            panic!("a timeout");
        };
        assert_eq!(last, "stale", "before the deadline the last one counts");
        let passed = Instant::now();
        failures.record("no answer within 1ms", passed);
        let Error::Timeout { last, .. } = failures.timeout("RawGet", Duration::ZERO) else {
            panic!("a timeout");
        };
        assert_eq!(last, "stale; then no answer within 1ms");
    }

    #[test]
    fn test_transport_errors_are_told_from_answers() {
        assert!(is_transport_error(&tonic::Status::unavailable("refused")));
        assert!(is_transport_error(&tonic::Status::cancelled("reset")));
        assert!(!is_transport_error(&tonic::Status::invalid_argument("bad")));
        assert!(!is_transport_error(&tonic::Status::unimplemented("no")));
        assert!(
            !is_transport_error(&tonic::Status::unknown("from a server")),
            "an UNKNOWN sent by a server is its answer"
        );
    }
}
