//! The engine's counters reach the host's `metrics` recorder under the
//! names docs/OPERATIONS.md lists, and calls to a shared store that fail
//! are timed and counted there.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::CompositeKey;
use nextbest::{Context, DecisionRequest, Engine};

fn find<'a>(
    snapshot: &'a [(CompositeKey, DebugValue)],
    name: &str,
    label: Option<(&str, &str)>,
) -> Option<&'a DebugValue> {
    snapshot
        .iter()
        .find(|(k, _)| {
            k.key().name() == name
                && label
                    .is_none_or(|(l, v)| k.key().labels().any(|x| x.key() == l && x.value() == v))
        })
        .map(|(_, v)| v)
}

fn snapshot(f: impl FnOnce()) -> Vec<(CompositeKey, DebugValue)> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, f);
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, _, _, v)| (k, v))
        .collect()
}

#[test]
fn engine_counters_reach_the_recorder() {
    let engine = Engine::from_dir("tests/fixtures/mini").unwrap();
    let ctx = Context::builder(&engine.schema())
        .set("age", 35)
        .set("income", 48_000.0)
        .build()
        .unwrap();
    for _ in 0..3 {
        engine
            .decide(&DecisionRequest::new("C1", "call_center", ctx.clone()))
            .unwrap();
    }
    assert!(engine
        .decide(&DecisionRequest::new("C1", "no_such_channel", ctx))
        .is_err());
    let snap = snapshot(|| {
        engine.report_metrics();
    });
    let decisions = find(&snap, "nextbest_decisions_total", Some(("arm", "champion")));
    assert_eq!(decisions, Some(&DebugValue::Counter(3)));
    assert_eq!(
        find(&snap, "nextbest_decision_errors_total", None),
        Some(&DebugValue::Counter(1))
    );
    assert!(find(&snap, "nextbest_live_version", None).is_some());
    assert!(find(&snap, "nextbest_loads_succeeded_total", None).is_some());
}

#[cfg(feature = "redis")]
#[test]
fn failed_store_calls_are_timed_and_counted() {
    use std::sync::Arc;

    use nextbest::state::fleet::StateConfig;
    use nextbest::state::history::HistoryConfig;
    use nextbest::state::redis::RedisHistory;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = RedisHistory::lazy(
        &StateConfig::new(format!("redis://127.0.0.1:{port}/0")),
        HistoryConfig::default(),
    )
    .unwrap();
    let engine = Engine::from_dir("tests/fixtures/mini")
        .unwrap()
        .with_history_store(Arc::new(store));
    let snap = snapshot(|| {
        let ctx = Context::builder(&engine.schema())
            .set("age", 35)
            .build()
            .unwrap();
        let _ = engine.record_outcome_json(
            r#"{"customer_id": "C1", "action": "CARD_GOLD", "channel": "call_center", "outcome": "accepted"}"#,
        );
        let _ = engine.decide(&DecisionRequest::new("C1", "call_center", ctx));
    });
    let errors = find(
        &snap,
        "nextbest_store_call_errors_total",
        Some(("operation", "record_outcome")),
    );
    assert_eq!(errors, Some(&DebugValue::Counter(1)), "{snap:?}");
    match find(
        &snap,
        "nextbest_store_seconds",
        Some(("operation", "record_outcome")),
    ) {
        Some(DebugValue::Histogram(h)) => assert_eq!(h.len(), 1),
        other => panic!("{other:?}"),
    }
}
