//! A timer queue keyed by name (mailbox or dialog id) for the tasks that drive many sans-IO
//! state machines: each key has at most one armed deadline; re-arming leaves a stale heap
//! entry that is skipped when popped, and the heap is rebuilt when stale entries dominate, so
//! memory stays proportional to the number of keys however often deadlines move.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

/// Sleeps until `at`, or forever when nothing is armed (for a `select!` branch).
pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[derive(Debug, Default)]
pub struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, String)>>,
    armed: HashMap<String, Instant>,
}

impl TimerQueue {
    /// Arms `key` at `at`, or disarms it with `None`.
    pub fn set(&mut self, key: &str, at: Option<Instant>) {
        match at {
            Some(at) => {
                if self.armed.get(key) == Some(&at) {
                    return;
                }
                self.armed.insert(key.to_string(), at);
                self.heap.push(Reverse((at, key.to_string())));
                if self.heap.len() > 2 * self.armed.len() + 64 {
                    self.compact();
                }
            }
            None => {
                self.armed.remove(key);
            }
        }
    }

    /// The earliest deadline (possibly a stale one: waking for it is harmless).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns every key whose armed deadline is at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Vec<String> {
        let mut due = Vec::new();
        while let Some(Reverse((at, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, key))) = self.heap.pop() else {
                break;
            };
            if self.armed.get(&key) == Some(&at) {
                self.armed.remove(&key);
                due.push(key);
            }
        }
        due
    }

    /// Entries held (armed and stale), for tests of the bound.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    fn compact(&mut self) {
        self.heap = self
            .armed
            .iter()
            .map(|(k, at)| Reverse((*at, k.clone())))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_only_the_latest_deadline_of_a_key() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        q.set("a", Some(t0 + Duration::from_secs(1)));
        q.set("a", Some(t0 + Duration::from_secs(5)));
        q.set("b", Some(t0 + Duration::from_secs(2)));
        assert_eq!(
            q.pop_due(t0 + Duration::from_secs(3)),
            vec!["b".to_string()]
        );
        assert!(q.pop_due(t0 + Duration::from_secs(4)).is_empty());
        assert_eq!(
            q.pop_due(t0 + Duration::from_secs(5)),
            vec!["a".to_string()]
        );
        q.set("c", Some(t0));
        q.set("c", None);
        assert!(q.pop_due(t0 + Duration::from_secs(9)).is_empty());
    }

    #[test]
    fn memory_stays_bounded_when_deadlines_move_often() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        for i in 0..100_000u64 {
            q.set("busy", Some(t0 + Duration::from_millis(i + 1)));
        }
        assert!(q.len() <= 2 + 64, "heap holds {} entries", q.len());
        assert_eq!(
            q.pop_due(t0 + Duration::from_secs(1000)),
            vec!["busy".to_string()]
        );
    }
}
