//! The send window of one fetch, sans-IO: the binary feeds batches of messages claimed from the
//! store (oldest first) and MSRP outcomes; this says which message to SEND next, when to claim
//! more and when the mailbox is done. A message counts as delivered only on its MSRP 200
//! (RFC 4975 §7.2: the 200 is the receiver's acknowledgement); any failure stops the fetch and
//! leaves every unacknowledged message in the store.

use std::collections::VecDeque;

/// Default number of SENDs in flight (config `fetch.window`).
pub const DEFAULT_WINDOW: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// May ask the store for more.
    Idle,
    /// A claim is running; `deposit_seen` records a deposit that may have missed it.
    Requested { deposit_seen: bool },
    /// The store had nothing more. `final_check` is true when that answer came while nothing
    /// was in flight, so no deposit can have slipped in unseen before the end.
    Exhausted { final_check: bool },
}

/// The delivery of one mailbox over one MSRP session. `Id` is the store's message id.
#[derive(Debug)]
pub struct Delivery<Id> {
    window: usize,
    queue: VecDeque<Id>,
    in_flight: VecDeque<Id>,
    claim: Claim,
    failed: bool,
    delivered: u64,
}

impl<Id: Clone + PartialEq> Delivery<Id> {
    /// A delivery with `window` SENDs in flight at most (0 is taken as 1).
    pub fn new(window: usize) -> Self {
        Self {
            window: window.max(1),
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            claim: Claim::Idle,
            failed: false,
            delivered: 0,
        }
    }

    /// Whether the binary should claim more messages from the store now (then call
    /// [`Self::claim_started`] and later [`Self::on_claimed`]). True while fewer than a
    /// window of messages are queued and the store may have more.
    pub fn needs_more(&self) -> bool {
        !self.failed && self.claim == Claim::Idle && self.queue.len() < self.window
    }

    /// The binary started a claim.
    pub fn claim_started(&mut self) {
        if self.claim == Claim::Idle {
            self.claim = Claim::Requested {
                deposit_seen: false,
            };
        }
    }

    /// A claimed batch, oldest first; an empty batch means the store has nothing more.
    pub fn on_claimed(&mut self, batch: impl IntoIterator<Item = Id>) {
        let deposit_seen = matches!(self.claim, Claim::Requested { deposit_seen: true });
        let before = self.queue.len();
        self.queue.extend(batch);
        self.claim = if self.queue.len() > before || deposit_seen {
            Claim::Idle
        } else {
            Claim::Exhausted {
                final_check: self.in_flight.is_empty() && self.queue.is_empty(),
            }
        };
    }

    /// A message was deposited into this mailbox during the fetch: claim again.
    pub fn on_deposit(&mut self) {
        match self.claim {
            Claim::Requested { .. } => {
                self.claim = Claim::Requested { deposit_seen: true };
            }
            Claim::Exhausted { .. } => self.claim = Claim::Idle,
            Claim::Idle => {}
        }
    }

    /// The next message to SEND, oldest first, while fewer than the window are in flight.
    pub fn poll_send(&mut self) -> Option<Id> {
        if self.failed || self.in_flight.len() >= self.window {
            return None;
        }
        let id = self.queue.pop_front()?;
        self.in_flight.push_back(id.clone());
        Some(id)
    }

    /// The MSRP 200 for `id` arrived: the binary deletes (or marks delivered) that message.
    /// Returns false for an id that is not in flight (a duplicate or stray response).
    pub fn on_delivered(&mut self, id: &Id) -> bool {
        let Some(pos) = self.in_flight.iter().position(|x| x == id) else {
            return false;
        };
        self.in_flight.remove(pos);
        self.delivered += 1;
        // The store said "empty" while SENDs were in flight: ask once more when they are
        // done, so a deposit that raced the claim is not left behind.
        if self.in_flight.is_empty()
            && self.queue.is_empty()
            && self.claim == (Claim::Exhausted { final_check: false })
        {
            self.claim = Claim::Idle;
        }
        true
    }

    /// `id` got an error response or timed out: the fetch stops; every message in flight or
    /// queued stays in the store (release their claims, see [`Self::unacknowledged`]).
    pub fn on_failed(&mut self, id: &Id) {
        if self.in_flight.contains(id) {
            self.failed = true;
        }
    }

    /// The fetch was interrupted (BYE, connection lost): stop like a failure.
    pub fn abort(&mut self) {
        self.failed = true;
    }

    /// Nothing in flight, nothing queued and the store confirmed it is empty: send BYE.
    pub fn is_finished(&self) -> bool {
        !self.failed
            && self.in_flight.is_empty()
            && self.queue.is_empty()
            && self.claim == (Claim::Exhausted { final_check: true })
    }

    /// The fetch stopped on a failure.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Claimed messages without a 200 (in flight first, then queued): after a failure their
    /// claims are released so they stay waiting.
    pub fn unacknowledged(&self) -> impl Iterator<Item = &Id> {
        self.in_flight.iter().chain(self.queue.iter())
    }

    /// SENDs currently in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Messages acknowledged so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }
}

impl<Id: Clone + PartialEq> Default for Delivery<Id> {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake store: ids 0..n, claims of `batch` oldest first.
    struct Store {
        next: u32,
        end: u32,
        batch: u32,
    }

    impl Store {
        fn claim(&mut self) -> Vec<u32> {
            let upto = (self.next + self.batch).min(self.end);
            let out = (self.next..upto).collect();
            self.next = upto;
            out
        }
    }

    fn refill(d: &mut Delivery<u32>, store: &mut Store) {
        while d.needs_more() {
            d.claim_started();
            d.on_claimed(store.claim());
        }
    }

    #[test]
    fn window_is_respected_and_order_is_oldest_first() {
        let mut d = Delivery::new(4);
        let mut store = Store {
            next: 0,
            end: 103,
            batch: 10,
        };
        let mut sent = Vec::new();
        let mut max_in_flight = 0;
        // The fetcher acknowledges the oldest outstanding SEND, one per step (a slow 200).
        loop {
            refill(&mut d, &mut store);
            while let Some(id) = d.poll_send() {
                sent.push(id);
            }
            max_in_flight = max_in_flight.max(d.in_flight());
            assert!(d.in_flight() <= 4);
            let Some(&oldest) = d.unacknowledged().next() else {
                break;
            };
            assert!(d.on_delivered(&oldest));
            if d.is_finished() {
                break;
            }
        }
        refill(&mut d, &mut store);
        assert!(d.is_finished());
        assert_eq!(max_in_flight, 4);
        assert_eq!(sent, (0..103).collect::<Vec<_>>());
        assert_eq!(d.delivered(), 103);
    }

    #[test]
    fn failure_stops_and_leaves_the_unacknowledged() {
        let mut d = Delivery::new(3);
        d.claim_started();
        d.on_claimed([1u32, 2, 3, 4, 5]);
        assert_eq!(
            (d.poll_send(), d.poll_send(), d.poll_send(), d.poll_send()),
            (Some(1), Some(2), Some(3), None)
        );
        assert!(d.on_delivered(&1));
        d.on_failed(&2);
        assert!(d.is_failed());
        assert_eq!(d.poll_send(), None);
        assert!(!d.needs_more());
        assert!(!d.is_finished());
        assert_eq!(
            d.unacknowledged().copied().collect::<Vec<_>>(),
            vec![2, 3, 4, 5]
        );
        assert!(!d.on_delivered(&1), "a duplicate 200 is ignored");
    }

    #[test]
    fn empty_mailbox_finishes_at_once() {
        let mut d: Delivery<u32> = Delivery::default();
        assert!(d.needs_more());
        d.claim_started();
        d.on_claimed([]);
        assert!(d.is_finished());
    }

    #[test]
    fn deposits_during_the_fetch_are_picked_up() {
        let mut d = Delivery::new(8);
        d.claim_started();
        d.on_claimed([1u32]);
        assert_eq!(d.poll_send(), Some(1));
        // The store is empty while 1 is in flight: not finished, and asked again after it.
        assert!(d.needs_more());
        d.claim_started();
        d.on_claimed([]);
        assert!(!d.needs_more());
        assert!(d.on_delivered(&1));
        assert!(
            !d.is_finished(),
            "a last claim is due after the window drained"
        );
        assert!(d.needs_more());
        d.claim_started();
        // A deposit notification arrives while that claim runs and the claim missed it.
        d.on_deposit();
        d.on_claimed([]);
        assert!(!d.is_finished());
        assert!(d.needs_more());
        d.claim_started();
        d.on_claimed([2]);
        assert_eq!(d.poll_send(), Some(2));
        assert!(d.on_delivered(&2));
        d.claim_started();
        d.on_claimed([]);
        assert!(d.is_finished());
        // A deposit after the end (before BYE went out) reopens it.
        d.on_deposit();
        assert!(!d.is_finished());
        assert!(d.needs_more());
    }

    #[test]
    fn abort_stops() {
        let mut d = Delivery::new(2);
        d.claim_started();
        d.on_claimed([7u32, 8]);
        assert_eq!(d.poll_send(), Some(7));
        d.abort();
        assert_eq!(d.poll_send(), None);
        assert_eq!(d.unacknowledged().count(), 2);
    }

    proptest::proptest! {
        /// Any order of 200s, claim sizes and deposits: never more than W in flight, every
        /// message sent once, oldest first, and finished only when the store is empty.
        #[test]
        fn window_order_and_completeness(
            window in 1usize..8,
            batch in 1u32..12,
            initial in 0u32..40,
            steps in proptest::collection::vec((0usize..8, proptest::bool::weighted(0.1)), 0..300),
        ) {
            let mut d = Delivery::new(window);
            let mut store = Store { next: 0, end: initial, batch };
            let mut sent = Vec::new();
            let mut steps = steps.into_iter();
            for _ in 0..10_000 {
                refill(&mut d, &mut store);
                while let Some(id) = d.poll_send() {
                    sent.push(id);
                }
                proptest::prop_assert!(d.in_flight() <= window);
                if d.is_finished() {
                    break;
                }
                let (pick, deposit) = steps.next().unwrap_or((0, false));
                if deposit {
                    store.end += 1;
                    d.on_deposit();
                }
                let outstanding: Vec<u32> = d.unacknowledged().take(d.in_flight()).copied().collect();
                if let Some(id) = outstanding.get(pick % outstanding.len().max(1)) {
                    proptest::prop_assert!(d.on_delivered(id));
                }
            }
            proptest::prop_assert!(d.is_finished());
            proptest::prop_assert_eq!(sent, (0..store.end).collect::<Vec<_>>());
            proptest::prop_assert_eq!(d.delivered(), u64::from(store.end));
        }
    }
}
