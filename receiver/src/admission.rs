//! The ingest admission budget: how many bytes of request bodies the
//! receiver holds at once, as received and as decompressed and decoded.
//!
//! The writer's budget (`--max-pending-bytes`) counts what waits for a group
//! commit; before that, a request's body is read, inflated and decoded, and a
//! few dozen clients sending small bodies that inflate to tens of megabytes
//! each would exhaust memory long before the writer sees anything. So every
//! request takes a [`Ticket`] for its body before reading it and grows it
//! as the body inflates; when the budget is spent the request is refused at
//! once, retryably (429 / `RESOURCE_EXHAUSTED` with a retry delay), rather
//! than waiting in memory.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::error::IngestError;

/// How long a refused client should wait before retrying.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The budget, shared by every receiver of a process.
#[derive(Debug, Clone)]
pub struct Admission {
    budget: Arc<Semaphore>,
    bytes: usize,
}

impl Admission {
    /// A budget of `bytes` (at most what a semaphore counts).
    pub fn new(bytes: usize) -> Self {
        let bytes = bytes.clamp(1, Semaphore::MAX_PERMITS);
        Admission {
            budget: Arc::new(Semaphore::new(bytes)),
            bytes,
        }
    }

    /// Admits a request holding `bytes`, or refuses it (retryably) when the
    /// budget is spent; a request larger than the whole budget is refused for good.
    pub fn admit(&self, bytes: usize) -> Result<Ticket, IngestError> {
        let mut ticket = Ticket {
            admission: self.clone(),
            permit: None,
            bytes: 0,
        };
        ticket.grow(bytes)?;
        Ok(ticket)
    }

    /// Bytes taken by requests now.
    pub fn in_use(&self) -> usize {
        self.bytes - self.budget.available_permits()
    }
}

/// One request's share of the budget, given back when dropped.
#[derive(Debug)]
pub struct Ticket {
    admission: Admission,
    permit: Option<OwnedSemaphorePermit>,
    bytes: usize,
}

impl Ticket {
    /// Takes `bytes` more for the request.
    pub fn grow(&mut self, bytes: usize) -> Result<(), IngestError> {
        if bytes == 0 {
            return Ok(());
        }
        let total = self.bytes.saturating_add(bytes);
        let budget = self.admission.bytes;
        if total > budget {
            return Err(IngestError::PayloadTooLarge {
                limit: budget,
                what: " held at once by the receiver (--max-inflight-bytes)",
            });
        }
        let more = Arc::clone(&self.admission.budget)
            .try_acquire_many_owned(u32::try_from(bytes).unwrap_or(u32::MAX))
            .map_err(|e| match e {
                TryAcquireError::Closed => IngestError::Unavailable {
                    message: "the receiver is shutting down".to_owned(),
                    retry_after: RETRY_AFTER,
                },
                TryAcquireError::NoPermits => IngestError::Overloaded {
                    message: format!(
                        "the receiver holds {} of its {budget} bytes of request bodies \
                         (--max-inflight-bytes): retry later",
                        self.admission.in_use()
                    ),
                    retry_after: RETRY_AFTER,
                },
            })?;
        match &mut self.permit {
            Some(permit) => permit.merge(more),
            None => self.permit = Some(more),
        }
        self.bytes = total;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_share_the_budget_and_give_it_back() {
        let admission = Admission::new(100);
        let mut first = admission.admit(60).expect("fits");
        let refused = admission.admit(50).expect_err("over the budget");
        assert!(
            matches!(refused, IngestError::Overloaded { .. }),
            "{refused}"
        );
        first.grow(30).expect("fits");
        assert_eq!(admission.in_use(), 90);
        assert!(first.grow(20).is_err());
        drop(first);
        assert_eq!(admission.in_use(), 0);
        let never = admission.admit(101).expect_err("larger than the budget");
        assert!(
            matches!(never, IngestError::PayloadTooLarge { .. }),
            "{never}"
        );
        admission.admit(100).expect("the whole budget");
    }
}
