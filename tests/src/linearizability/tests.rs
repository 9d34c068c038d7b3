//! Histories the checker must accept and histories it must reject.

use super::*;

fn op(
    client: u64,
    key: &str,
    input: Input,
    output: Option<&str>,
    call: u64,
    ret: u64,
) -> Operation {
    Operation {
        client,
        key: key.to_owned(),
        input,
        output: output.map(str::to_owned),
        call,
        ret: Some(ret),
    }
}

fn put(client: u64, key: &str, v: &str, call: u64, ret: u64) -> Operation {
    op(client, key, Input::Put(v.to_owned()), None, call, ret)
}

fn append(client: u64, key: &str, v: &str, call: u64, ret: u64) -> Operation {
    op(client, key, Input::Append(v.to_owned()), None, call, ret)
}

fn get(client: u64, key: &str, seen: &str, call: u64, ret: u64) -> Operation {
    op(client, key, Input::Get, Some(seen), call, ret)
}

fn unanswered(mut op: Operation) -> Operation {
    op.ret = None;
    op
}

#[test]
fn a_sequential_history_that_follows_the_model_passes() {
    let history = [
        get(1, "k", "", 0, 1),
        put(1, "k", "a", 2, 3),
        append(2, "k", "b", 4, 5),
        get(3, "k", "ab", 6, 7),
    ];
    assert_eq!(check(&history), Ok(()));
}

#[test]
fn concurrent_operations_may_take_effect_in_either_order() {
    // Both appends overlap both reads: "xy" and "yx" are both possible,
    // as long as the two reads agree with one order.
    let history = [
        append(1, "k", "x", 0, 10),
        append(2, "k", "y", 0, 10),
        get(3, "k", "y", 1, 9),
        get(4, "k", "yx", 2, 9),
    ];
    assert_eq!(check(&history), Ok(()));
}

#[test]
fn a_stale_read_is_rejected() {
    let history = [
        put(1, "k", "a", 0, 1),
        put(1, "k", "b", 2, 3),
        // Called after "b" was acknowledged, still sees "a".
        get(2, "k", "a", 4, 5),
    ];
    let v = check(&history).expect_err("a stale read");
    assert_eq!(v.key, "k");
    assert_eq!(v.total, 3);
    assert_eq!(v.linearized, 2);
    assert_eq!(v.stuck, vec![history[2].clone()], "{v}");
}

#[test]
fn an_append_applied_twice_is_rejected() {
    // The retry of a lost answer applied the append again.
    let history = [append(1, "k", "x", 0, 5), get(2, "k", "xx", 6, 7)];
    assert!(check(&history).is_err());
}

#[test]
fn a_lost_acknowledged_write_is_rejected() {
    let history = [
        append(1, "k", "x", 0, 1),
        append(2, "k", "y", 2, 3),
        get(3, "k", "y", 4, 5),
    ];
    assert!(check(&history).is_err());
}

#[test]
fn reads_must_not_go_back_in_time() {
    // The write overlaps both reads, but once one read saw it a later read
    // (called after the first returned) must see it too.
    let history = [
        put(1, "k", "new", 0, 10),
        get(2, "k", "new", 1, 2),
        get(3, "k", "", 3, 4),
    ];
    assert!(check(&history).is_err());
}

#[test]
fn a_write_with_no_answer_may_have_happened_or_not() {
    let maybe = unanswered(put(1, "k", "a", 0, 0));
    assert_eq!(check(&[maybe.clone(), get(2, "k", "a", 5, 6)]), Ok(()));
    assert_eq!(check(&[maybe.clone(), get(2, "k", "", 5, 6)]), Ok(()));
    // But not un-happen once seen.
    assert!(check(&[maybe, get(2, "k", "a", 5, 6), get(3, "k", "", 7, 8)]).is_err());
    // A read with no answer constrains nothing.
    assert_eq!(check(&[unanswered(get(1, "k", "zzz", 0, 0))]), Ok(()));
}

#[test]
fn keys_are_checked_apart_and_the_failing_one_is_named() {
    let history = [
        put(1, "a", "1", 0, 1),
        put(1, "b", "1", 0, 1),
        get(2, "a", "1", 2, 3),
        get(2, "b", "2", 2, 3),
    ];
    let v = check(&history).expect_err("b's read saw a value never written");
    assert_eq!(v.key, "b");
    assert!(v.to_string().contains("get -> \"2\""), "{v}");
}

#[test]
fn rounds_of_concurrent_appends_with_reads_between_are_checked() {
    // 5 clients append at once, in the reverse of their call order, then
    // a read sees the order the store chose; 40 such rounds.
    let mut history = Vec::new();
    let mut expected = String::new();
    for round in 0..40u64 {
        let start = round * 100;
        for client in 0..5u64 {
            history.push(append(
                client,
                "k",
                &format!("[{client}.{round}]"),
                start + client,
                start + 50,
            ));
        }
        for client in (0..5u64).rev() {
            expected.push_str(&format!("[{client}.{round}]"));
        }
        history.push(get(9, "k", &expected, start + 60, start + 61));
    }
    assert_eq!(check(&history), Ok(()));
    // One append of the middle round lost from the last read on.
    let last = history.len() - 1;
    history[last].output = Some(expected.replacen("[3.20]", "", 1));
    let v = check(&history).expect_err("a lost append");
    assert_eq!(v.linearized, history.len() - 1, "{v}");
}

#[test]
fn a_search_over_budget_is_inconclusive_never_a_pass() {
    // Twelve concurrent appends and no read: every order is a new state.
    let mut history: Vec<Operation> = (0..12)
        .map(|c| append(c, "k", &format!("{c},"), 0, 100))
        .collect();
    history.push(get(99, "k", "nonsense", 200, 201));
    match check_within(&history, 1_000) {
        Err(CheckError::Inconclusive { key, steps }) => {
            assert_eq!(key, "k");
            assert_eq!(steps, 1_000);
        }
        other => panic!("expected Inconclusive, got {other:?}"),
    }
    // Given room, the same search concludes: the read fits no order.
    assert!(matches!(check_within(&history[..4], u64::MAX), Ok(())));
    let small: Vec<Operation> = history[..4]
        .iter()
        .cloned()
        .chain(std::iter::once(get(99, "k", "nonsense", 200, 201)))
        .collect();
    assert!(matches!(
        check_within(&small, 1_000_000),
        Err(CheckError::NotLinearizable(_))
    ));
}

#[test]
fn unknown_writes_no_read_saw_are_left_out_and_the_verdict_kept() {
    let history = vec![
        put(0, "k", "a;", 0, 10),
        unanswered(put(1, "k", "never-seen;", 11, 12)),
        unanswered(append(2, "k", "seen;", 13, 14)),
        unanswered(append(3, "k", "lost;", 15, 16)),
        get(4, "k", "a;seen;", 20, 21),
        unanswered(put(1, "j", "other-key;", 0, 1)),
        unanswered(get(4, "k", "never-seen;", 22, 23)),
    ];
    let kept = without_unobserved_unknown_writes(&history);
    let kept_inputs: Vec<&Input> = kept.iter().map(|op| &op.input).collect();
    assert_eq!(
        kept_inputs,
        vec![
            &Input::Put("a;".to_owned()),
            &Input::Append("seen;".to_owned()),
            &Input::Get,
            &Input::Get,
        ],
        "only the unknown writes no answered read saw go"
    );
    assert_eq!(check(&history).is_ok(), check(&kept).is_ok());
    assert!(check(&kept).is_ok());

    // A read that needs a write which is not there fails either way.
    let mut bad = history.clone();
    bad.push(get(4, "k", "a;", 30, 31));
    assert!(check(&bad).is_err());
    assert!(check(&without_unobserved_unknown_writes(&bad)).is_err());
}
