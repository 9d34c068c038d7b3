//! A linearizability checker for key/value histories (Wing & Gong's search
//! with Lowe's memoization, as Porcupine does it).
//!
//! A history is what clients saw: each [`Operation`] has the client's call
//! time and the time its answer came back, in one clock all clients share
//! (a test's `Instant`s turned into nanoseconds, or a simulation's steps).
//! The history is linearizable if every operation can be given one point
//! between its call and its return such that, in the order of those
//! points, each operation's answer is what the [`KvModel`] (one string per
//! key, `Put` sets it, `Append` extends it, `Get` reads it; a missing key
//! reads empty) answers.
//!
//! How it searches (per key: operations on different keys never
//! constrain each other, so each key is checked alone — "P-compositionality"):
//! - the calls and returns are sorted by time (a call before a return at
//!   the same time: such operations count as concurrent);
//! - walking the list, a call whose operation the model accepts in the
//!   current state is linearized: taken out of the list with its return,
//!   pushed on a stack, and the walk restarts from the front;
//! - reaching a return means the operation returning there cannot be put
//!   off any longer: the last choice is undone and the walk goes on past it;
//! - a (linearized set, state) pair seen before is not explored again,
//!   which keeps the search small when reads come often: a read pins the
//!   state, so orders that disagree with it die at once. Many concurrent
//!   appends with no read between them still make it exponential (each
//!   order is a different state). [`check_within`] bounds the search: it
//!   counts every step of the walk (a call tried, a choice undone) across
//!   all keys and, past its budget, answers [`CheckError::Inconclusive`] —
//!   never a pass. [`check`] has no bound.
//!
//! An operation whose outcome is unknown (the client gave up, or crashed
//! while waiting) has no return time: it may have taken effect at any time
//! after its call, or never. A write is kept with its return at infinity
//! (never taking effect is the same as taking effect after everything); a
//! read with no answer constrains nothing and is left out.
//!
//! On a violation [`check`] returns, for the first key that fails, the
//! longest linearizable prefix found and the window that could not be
//! continued: the last operations of that prefix and every operation that
//! had to be linearized next (called before the earliest pending return).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    /// Read the key's value.
    Get,
    /// Set the key's value.
    Put(String),
    /// Append to the key's value.
    Append(String),
}

/// One operation of one client, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The client that issued it (for the report only).
    pub client: u64,
    /// The key it is about.
    pub key: String,
    /// What was asked.
    pub input: Input,
    /// What a `Get` returned (`None` for writes).
    pub output: Option<String>,
    /// When it was called.
    pub call: u64,
    /// When its answer came back; `None` if it never did (outcome unknown).
    pub ret: Option<u64>,
}

/// `history` without the writes whose outcome is unknown and whose value
/// no read of their key contains: the same verdict, a smaller search.
///
/// Each such write may stay pending to the end, and a search tries it at
/// every point: many of them make the search exponential. Leaving one out
/// cannot change the verdict. In a linearization with it, no read sees it:
/// a `Put` of `v` or an `Append` of `v` puts `v` into the key's value until
/// the next `Put`, so every read in between would contain `v`. With no read
/// in between, what it changed is overwritten before anyone looks, and the
/// same order without it is a linearization of the rest. Conversely, a
/// linearization of the rest is one of the whole history with the write
/// placed last (it may never have happened). A value that appears in a read
/// by chance (written twice, or a substring of others) only keeps a write
/// that could have gone.
pub fn without_unobserved_unknown_writes(history: &[Operation]) -> Vec<Operation> {
    let mut reads: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for op in history {
        if let (Input::Get, Some(_), Some(out)) = (&op.input, op.ret, op.output.as_deref()) {
            reads.entry(&op.key).or_default().push(out);
        }
    }
    history
        .iter()
        .filter(|op| {
            let value = match &op.input {
                _ if op.ret.is_some() => return true,
                Input::Get => return true,
                Input::Put(v) | Input::Append(v) => v,
            };
            reads
                .get(op.key.as_str())
                .is_some_and(|outs| outs.iter().any(|out| out.contains(value.as_str())))
        })
        .cloned()
        .collect()
}

/// The sequential specification: one string per key.
#[derive(Debug, Clone, Copy, Default)]
pub struct KvModel;

impl KvModel {
    /// Applies `input` with observed `output` to `state`: the state after
    /// it, or `None` if the model could not have answered `output`.
    pub fn step(state: &str, input: &Input, output: Option<&str>) -> Option<String> {
        match input {
            Input::Get => (output == Some(state)).then(|| state.to_owned()),
            Input::Put(value) => Some(value.clone()),
            Input::Append(value) => Some(format!("{state}{value}")),
        }
    }
}

/// Why a history is not linearizable, for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The key whose operations cannot be linearized.
    pub key: String,
    /// How many of its operations the longest linearizable prefix holds.
    pub linearized: usize,
    /// Of how many.
    pub total: usize,
    /// The last operations of that prefix, in the order linearized.
    pub prefix_tail: Vec<Operation>,
    /// The operations that had to come next, none of which fits.
    pub stuck: Vec<Operation>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "key {:?}: not linearizable; longest linearizable prefix {} of {} operations",
            self.key, self.linearized, self.total
        )?;
        writeln!(f, "  last operations of that prefix, in order:")?;
        for op in &self.prefix_tail {
            writeln!(f, "    {}", Shown(op))?;
        }
        writeln!(f, "  operations that had to come next, none of which fits:")?;
        for op in &self.stuck {
            writeln!(f, "    {}", Shown(op))?;
        }
        Ok(())
    }
}

struct Shown<'a>(&'a Operation);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = self.0;
        let ret = op.ret.map_or("?".to_owned(), |r| r.to_string());
        match &op.input {
            Input::Get => write!(
                f,
                "client {} [{}, {}] get -> {:?}",
                op.client,
                op.call,
                ret,
                op.output.as_deref().unwrap_or("")
            ),
            Input::Put(v) => write!(f, "client {} [{}, {}] put {v:?}", op.client, op.call, ret),
            Input::Append(v) => {
                write!(
                    f,
                    "client {} [{}, {}] append {v:?}",
                    op.client, op.call, ret
                )
            }
        }
    }
}

/// How many linearized operations of a violation's prefix are shown.
const PREFIX_TAIL: usize = 5;

/// Why [`check_within`] did not pass a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// The history is not linearizable; the first failing key's report.
    NotLinearizable(Box<Violation>),
    /// The budget ran out before the search finished: nothing is known.
    Inconclusive {
        /// The key being searched when the budget ran out.
        key: String,
        /// How many steps were taken, over all keys.
        steps: u64,
    },
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::NotLinearizable(v) => v.fmt(f),
            CheckError::Inconclusive { key, steps } => write!(
                f,
                "inconclusive: the search budget ran out after {steps} steps, at key {key:?}; \
                 the history is neither passed nor failed"
            ),
        }
    }
}

/// Checks `history`; `Err` names the first key (in key order) that fails.
/// The search is unbounded: see [`check_within`] for one with a budget.
pub fn check(history: &[Operation]) -> Result<(), Box<Violation>> {
    match check_within(history, u64::MAX) {
        Ok(()) => Ok(()),
        Err(CheckError::NotLinearizable(v)) => Err(v),
        Err(CheckError::Inconclusive { .. }) => {
            unreachable!("an unbounded search always concludes")
        }
    }
}

/// Checks `history` taking at most `budget` search steps over all keys;
/// `Inconclusive` once they run out (never a pass).
pub fn check_within(history: &[Operation], budget: u64) -> Result<(), CheckError> {
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for op in history {
        if op.ret.is_none() && op.input == Input::Get {
            continue; // an unanswered read constrains nothing
        }
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    let mut steps = 0u64;
    for (key, ops) in by_key {
        check_key(key, &ops, budget, &mut steps)?;
    }
    Ok(())
}

/// One call or return in the time-ordered list.
#[derive(Debug, Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// For a call: the index of its return event.
    matching: usize,
}

/// A doubly linked list over `events`, in time order; index `0` is a
/// sentinel head. Removing a call removes its return too; undoing in
/// reverse order restores both (the removed nodes keep their links).
struct EventList {
    events: Vec<Event>,
    prev: Vec<usize>,
    next: Vec<usize>,
}

const END: usize = usize::MAX;

impl EventList {
    fn new(ops: &[Operation]) -> EventList {
        // (time, 0 for a call / 1 for a return, op): calls first on ties.
        let mut raw: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            raw.push((op.call, 0, i));
            raw.push((op.ret.unwrap_or(u64::MAX), 1, i));
        }
        raw.sort_unstable();
        let mut events = vec![Event {
            op: END,
            is_call: false,
            matching: END,
        }];
        let mut return_at = vec![END; ops.len()];
        for &(_, kind, op) in &raw {
            if kind == 1 {
                return_at[op] = events.len();
            }
            events.push(Event {
                op,
                is_call: kind == 0,
                matching: END,
            });
        }
        for event in events.iter_mut().skip(1) {
            if event.is_call {
                event.matching = return_at[event.op];
            }
        }
        let n = events.len();
        let prev = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let next = (0..n)
            .map(|i| if i + 1 < n { i + 1 } else { END })
            .collect();
        EventList { events, prev, next }
    }

    fn unlink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = n;
        if n != END {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = i;
        if n != END {
            self.prev[n] = i;
        }
    }

    /// Takes call `i` and its return out.
    fn lift(&mut self, i: usize) {
        self.unlink(i);
        self.unlink(self.events[i].matching);
    }

    /// Puts call `i` and its return back (the reverse of `lift`).
    fn unlift(&mut self, i: usize) {
        self.relink(self.events[i].matching);
        self.relink(i);
    }
}

fn check_key(key: &str, ops: &[Operation], budget: u64, steps: &mut u64) -> Result<(), CheckError> {
    let mut list = EventList::new(ops);
    let mut linearized = vec![0u64; ops.len().div_ceil(64)];
    let mut seen: HashSet<(Vec<u64>, String)> = HashSet::new();
    // (call event, state before it), in the order linearized.
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut state = String::new();
    let mut longest: Vec<usize> = Vec::new();
    let mut cursor = list.next[0];
    while list.next[0] != END {
        if *steps >= budget {
            return Err(CheckError::Inconclusive {
                key: key.to_owned(),
                steps: *steps,
            });
        }
        *steps += 1;
        if cursor == END {
            // Unreachable: the last event left is a return, handled below.
            break;
        }
        let event = list.events[cursor];
        if event.is_call {
            let op = &ops[event.op];
            if let Some(after) = KvModel::step(&state, &op.input, op.output.as_deref()) {
                linearized[event.op / 64] |= 1 << (event.op % 64);
                if seen.insert((linearized.clone(), after.clone())) {
                    stack.push((cursor, std::mem::replace(&mut state, after)));
                    if stack.len() > longest.len() {
                        longest = stack.iter().map(|&(e, _)| list.events[e].op).collect();
                    }
                    list.lift(cursor);
                    cursor = list.next[0];
                    continue;
                }
                linearized[event.op / 64] &= !(1 << (event.op % 64));
            }
            cursor = list.next[cursor];
            continue;
        }
        // A return: its operation had to be linearized by now.
        let Some((call, before)) = stack.pop() else {
            return Err(CheckError::NotLinearizable(Box::new(violation(
                key, ops, &longest,
            ))));
        };
        let op = list.events[call].op;
        linearized[op / 64] &= !(1 << (op % 64));
        state = before;
        list.unlift(call);
        cursor = list.next[call];
    }
    Ok(())
}

/// The report for `ops` whose longest linearizable prefix is `longest`.
fn violation(key: &str, ops: &[Operation], longest: &[usize]) -> Violation {
    let done: HashSet<usize> = longest.iter().copied().collect();
    let rest: Vec<&Operation> = (0..ops.len())
        .filter(|i| !done.contains(i))
        .map(|i| &ops[i])
        .collect();
    let deadline = rest
        .iter()
        .map(|op| op.ret.unwrap_or(u64::MAX))
        .min()
        .unwrap_or(u64::MAX);
    let mut stuck: Vec<Operation> = rest
        .into_iter()
        .filter(|op| op.call <= deadline)
        .cloned()
        .collect();
    stuck.sort_by_key(|op| op.call);
    Violation {
        key: key.to_owned(),
        linearized: longest.len(),
        total: ops.len(),
        prefix_tail: longest[longest.len().saturating_sub(PREFIX_TAIL)..]
            .iter()
            .map(|&i| ops[i].clone())
            .collect(),
        stuck,
    }
}

#[cfg(test)]
mod tests;
