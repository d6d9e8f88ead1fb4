//! One replay run: per test set, a fresh instance, every test case sent and compared, a result
//! stored per case and a report per set. The instance is stopped whatever happens.

use std::{sync::Arc, time::Duration};

use kreplay_domain::{
    compare::{Category, CompareOptions, Comparison, compare_compiled},
    http::{HttpRequest, HttpResponse},
    noise::{CompiledNoise, GlobalNoise, NoiseMap, merge},
    report::{
        ReportRequest, ReportResponse, TestResult, TestSetReport, TestSetStatus, TestStatus,
        format_duration,
    },
};
use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::{PlannedSet, RunPlan, RunState, client::ReplayClient, mocking::MockSession};
use crate::{
    agents::AgentHub,
    model::TestCase,
    orchestrator::{InstanceRequest, Orchestrator, ReplayInstance},
    store::{MockSet, ReportRow, RunKey, SharedStore, TestCaseResultRow, blocking},
    util::{now_unix_ms, now_unix_secs},
};

/// Where a run's time went, summed over its test cases (the `timing` of the last status line).
#[derive(Debug, Default, Clone, Copy)]
struct Timing {
    cases: u64,
    app: Duration,
    compare: Duration,
    storage: Duration,
}

impl Timing {
    fn add(&mut self, other: Timing) {
        self.cases += other.cases;
        self.app += other.app;
        self.compare += other.compare;
        self.storage += other.storage;
    }

    fn json(&self, total: Duration) -> Value {
        let ms = |d: Duration| (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
        json!({
            "test_cases": self.cases,
            "total_ms": ms(total),
            "app_ms": ms(self.app),
            "compare_ms": ms(self.compare),
            "storage_ms": ms(self.storage),
        })
    }
}

/// Rejects invalid regexes before anything starts.
pub fn check_noise(noise: &GlobalNoise) -> Result<(), String> {
    let mut sets: Vec<&str> = noise.test_sets.keys().map(String::as_str).collect();
    sets.push("");
    for set in sets {
        CompiledNoise::compile(&noise.for_test_set(set)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A status line of the run (`type: "status"`).
pub fn state_line(plan: &RunPlan, status: &str, extra: Value) -> Value {
    let mut line = json!({
        "type": "status",
        "replay_id": plan.replay_id,
        "test_run_id": plan.test_run_id,
        "namespace": plan.namespace,
        "deployment": plan.deployment,
        "status": status,
    });
    if let (Some(line), Some(extra)) = (line.as_object_mut(), extra.as_object()) {
        line.extend(extra.clone());
    }
    line
}

pub async fn run(
    plan: RunPlan,
    state: Arc<RunState>,
    store: SharedStore,
    orchestrator: Arc<dyn Orchestrator>,
    hub: Arc<AgentHub>,
) {
    state.push(state_line(&plan, "running", json!({})));
    let started = std::time::Instant::now();
    let mut timing = Timing::default();
    let mut summary = Vec::new();
    let mut any_failed = false;
    for (set_index, set) in plan.sets.iter().enumerate() {
        if state.cancel.is_cancelled() {
            break;
        }
        let (report, set_timing) = replay_set(
            &plan,
            set_index,
            set,
            &state,
            &store,
            orchestrator.as_ref(),
            &hub,
        )
        .await;
        timing.add(set_timing);
        any_failed |= report.status != TestSetStatus::Passed;
        summary.push(json!({
            "test_set": report.test_set,
            "status": report.status,
            "success": report.success,
            "failure": report.failure,
            "total": report.total,
        }));
        let line =
            json!({"type": "test_set", "report": summary.last().cloned().unwrap_or(Value::Null)});
        state.push(line);
    }
    let (status, run_status) = if state.cancel.is_cancelled() {
        ("stopped", "USER_ABORT")
    } else if any_failed {
        ("completed", "FAILED")
    } else {
        ("completed", "PASSED")
    };
    let id = plan.replay_id.clone();
    if let Err(e) = blocking(&store, move |s| s.set_test_run_status(&id, run_status)).await {
        tracing::error!(replay_id = %plan.replay_id, error = %e, "cannot store the run status");
    }
    tracing::info!(replay_id = %plan.replay_id, test_run_id = %plan.test_run_id, result = run_status, "replay finished");
    state.finish(state_line(
        &plan,
        status,
        json!({"result": run_status, "test_sets": summary, "timing": timing.json(started.elapsed())}),
    ));
}

/// Replays one test set and stores its report (also when the app never comes up).
async fn replay_set(
    plan: &RunPlan,
    set_index: usize,
    set: &PlannedSet,
    state: &RunState,
    store: &SharedStore,
    orchestrator: &dyn Orchestrator,
    hub: &Arc<AgentHub>,
) -> (TestSetReport, Timing) {
    let started = now_unix_secs();
    let mut timing = Timing::default();
    let mut report = TestSetReport::new(&set.test_set, i64::try_from(started).unwrap_or(0));
    let request = InstanceRequest {
        namespace: plan.namespace.clone(),
        name: plan.deployment.clone(),
        // Never the set's name: names come from users and end up in paths.
        label: format!("{}-{}", plan.replay_id, set_index),
        env_overrides: plan.env_overrides.clone(),
    };
    match orchestrator.prepare_instance(&request) {
        Err(e) => {
            report.status = TestSetStatus::AppFault;
            report.failure_reason = format!("cannot start a replay instance: {e}");
        }
        Ok(instance) => {
            let instance: Arc<dyn ReplayInstance> = Arc::from(instance);
            let mock_set = MockSet {
                namespace: plan.namespace.clone(),
                deployment: plan.deployment.clone(),
                test_set: set.test_set.clone(),
            };
            let session = MockSession::start(
                hub.clone(),
                store,
                &plan.replay_id,
                mock_set,
                instance.as_ref(),
            )
            .await;
            match session {
                Err(reason) => {
                    report.status = TestSetStatus::InternalErr;
                    report.failure_reason = reason;
                }
                Ok(mut mocks) => {
                    let ready = match instance.launch() {
                        Ok(()) => wait_ready(instance.as_ref(), plan, state).await,
                        Err(e) => Err(format!("cannot start the app: {e}")),
                    };
                    match ready {
                        Err(reason) => {
                            report.status = if state.cancel.is_cancelled() {
                                TestSetStatus::UserAbort
                            } else {
                                TestSetStatus::AppHalted
                            };
                            report.failure_reason = reason;
                        }
                        Ok(()) => {
                            timing = replay_cases(
                                plan,
                                set,
                                state,
                                store,
                                instance.as_ref(),
                                &mut mocks,
                                &mut report,
                            )
                            .await;
                        }
                    }
                    let passed = report.tests.iter().all(|t| t.status == TestStatus::Passed)
                        && !report.tests.is_empty()
                        && !state.cancel.is_cancelled();
                    let ran = report
                        .tests
                        .iter()
                        .map(|t| t.test_case_id.clone())
                        .collect();
                    // The app dies first: with the redirect gone a live app would reach its
                    // real dependencies.
                    stop_instance(&instance).await;
                    mocks.finish(store, passed, ran).await;
                }
            }
            stop_instance(&instance).await;
        }
    }
    report.tally();
    if report.status == TestSetStatus::Running {
        report.status = if state.cancel.is_cancelled() {
            TestSetStatus::UserAbort
        } else if report.failure > 0 {
            TestSetStatus::Failed
        } else {
            TestSetStatus::Passed
        };
    }
    report.time_taken = format!("{}s", now_unix_secs().saturating_sub(started));
    let storing = std::time::Instant::now();
    store_report(plan, &report, store).await;
    timing.storage += storing.elapsed();
    (report, timing)
}

/// Kills the instance's processes and waits for them (idempotent).
async fn stop_instance(instance: &Arc<dyn ReplayInstance>) {
    let stopping = instance.clone();
    match tokio::task::spawn_blocking(move || stopping.stop()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "stopping the replay instance"),
        Err(e) => tracing::error!(error = %e, "stopping the replay instance"),
    }
}

async fn store_report(plan: &RunPlan, report: &TestSetReport, store: &SharedStore) {
    let row = ReportRow {
        key: run_key(plan),
        test_set: report.test_set.clone(),
        status: json!(report.status).as_str().unwrap_or("").to_owned(),
        report: serde_json::to_value(report).unwrap_or(Value::Null),
        updated_at_ms: now_unix_ms(),
    };
    if let Err(e) = blocking(store, move |s| s.upsert_report(&row)).await {
        tracing::error!(error = %e, "cannot store a test set report");
    }
}

fn run_key(plan: &RunPlan) -> RunKey {
    RunKey {
        namespace: plan.namespace.clone(),
        deployment: plan.deployment.clone(),
        test_run_id: plan.test_run_id.clone(),
    }
}

/// Waits for the instance: its health path answering 2xx/3xx (or, without one, a TCP
/// connection accepted), then `delay`. Fails when the app exits or the timeout passes.
async fn wait_ready(
    instance: &dyn ReplayInstance,
    plan: &RunPlan,
    state: &RunState,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + plan.health_timeout;
    loop {
        if state.cancel.is_cancelled() {
            return Err("replay stopped while waiting for the app".into());
        }
        let last = match probe(instance).await {
            Ok(()) => break,
            Err(e) => e,
        };
        if !instance.alive() {
            return Err(format!(
                "the app exited before it became ready ({last}); its log: {}",
                instance.log_path().display()
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the app did not become ready within {:?} ({last}); its log: {}",
                plan.health_timeout,
                instance.log_path().display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::select! {
        _ = tokio::time::sleep(plan.delay) => Ok(()),
        _ = state.cancel.cancelled() => Err("replay stopped during the start-up delay".into()),
    }
}

async fn probe(instance: &dyn ReplayInstance) -> Result<(), String> {
    let addr = instance.addr();
    let Some(path) = instance.health_path() else {
        return TcpStream::connect(addr)
            .await
            .map(|_| ())
            .map_err(|e| format!("connect {addr}: {e}"));
    };
    let mut client = ReplayClient::new(addr);
    let request = HttpRequest {
        method: "GET".into(),
        target: path.clone(),
        ..Default::default()
    };
    match client.send(&request, Duration::from_secs(2)).await {
        Ok(r) if (200..400).contains(&r.status_code) => Ok(()),
        Ok(r) => Err(format!("GET {path} answered {}", r.status_code)),
        Err(e) => Err(format!("GET {path}: {e}")),
    }
}

async fn replay_cases(
    plan: &RunPlan,
    set: &PlannedSet,
    state: &RunState,
    store: &SharedStore,
    instance: &dyn ReplayInstance,
    mocks: &mut MockSession,
    report: &mut TestSetReport,
) -> Timing {
    let mut timing = Timing::default();
    let mut pending = Vec::new();
    let mut client = ReplayClient::new(instance.addr());
    let set_noise = plan.global_noise.for_test_set(&set.test_set);
    // Checked when the run was accepted; should it fail anyway, every case says why.
    let compiled_set_noise = CompiledNoise::compile(&set_noise);
    let options = CompareOptions {
        ignore_ordering: plan.ignore_ordering,
        ..CompareOptions::default()
    };
    for case in &set.cases {
        if state.cancel.is_cancelled() {
            break;
        }
        if mocks.broken() {
            report.status = TestSetStatus::InternalErr;
            report.failure_reason =
                "the mock server stopped answering; the remaining test cases were not run".into();
            break;
        }
        let (request, expected) = recorded(case);
        let mut noise: NoiseMap = set_noise.clone();
        merge(&mut noise, &case.case.noise);
        let started = now_unix_secs();
        let sending = std::time::Instant::now();
        let begun = mocks.begin_test(&case.name).await;
        let outcome = tokio::select! {
            outcome = client.send(&request, plan.api_timeout) => outcome,
            _ = state.cancel.cancelled() => break,
        };
        let unmatched = match begun {
            Ok(()) => mocks.end_test(&case.name).await,
            Err(e) => Err(e),
        };
        let took = sending.elapsed();
        timing.app += took;
        let comparing = std::time::Instant::now();
        let (comparison, actual) = match outcome {
            Ok(actual) => {
                // Test-case noise is rare: compile the merged rules only when there is some.
                let verdict = if case.case.noise.is_empty() {
                    compiled_set_noise
                        .as_ref()
                        .map(|n| compare_compiled(&expected, &actual, n, &options))
                        .map_err(Clone::clone)
                } else {
                    CompiledNoise::compile(&noise)
                        .map(|n| compare_compiled(&expected, &actual, &n, &options))
                };
                match verdict {
                    Ok(c) => (c, actual),
                    Err(e) => (
                        Comparison::failure(&expected, Category::InternalFailure, e.to_string()),
                        actual,
                    ),
                }
            }
            Err(e) => (
                Comparison::failure(&expected, Category::AppConnectionError, e.to_string()),
                HttpResponse::default(),
            ),
        };
        let mut comparison = comparison;
        match unmatched {
            Ok(calls) if !calls.is_empty() => {
                comparison.passed = false;
                comparison.failure_info.add_unmatched_calls(calls);
            }
            Ok(_) => {}
            Err(e) => {
                comparison.passed = false;
                comparison
                    .failure_info
                    .add_unmatched_calls(vec![json!({"error": format!("mock server: {e}")})]);
            }
        }
        let mut result = TestResult::new(&set.test_set, &case.name);
        result.set_comparison(&comparison);
        result.started = i64::try_from(started).unwrap_or(0);
        result.completed = i64::try_from(now_unix_secs()).unwrap_or(0);
        result.test_case_path = format!("keploy/{}/tests/{}.yaml", set.test_set, case.name);
        result.mock_path = format!("keploy/{}/mocks.yaml", set.test_set);
        result.req = ReportRequest::from_request(&request);
        result.resp = ReportResponse::from_response(&actual);
        result.noise = noise;
        result.time_taken = format_duration(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
        let status = result.status;
        timing.compare += comparing.elapsed();
        timing.cases += 1;
        let line = json!({
            "type": "test_case",
            "test_set": set.test_set,
            "test_case_id": case.name,
            "status": status,
            "risk": comparison.failure_info.risk,
            "category": comparison.failure_info.category,
            "diffs": comparison.failure_info.assessment.diffs,
        });
        let row = TestCaseResultRow {
            id: 0,
            key: run_key(plan),
            test_set: set.test_set.clone(),
            test_case_id: case.name.clone(),
            status: json!(status).as_str().unwrap_or("").to_owned(),
            result: serde_json::to_value(&result).unwrap_or(Value::Null),
            created_at_ms: now_unix_ms(),
        };
        pending.push(row);
        if pending.len() >= RESULT_BATCH {
            timing.storage += store_results(store, std::mem::take(&mut pending)).await;
        }
        report.tests.push(result);
        state.push(line);
    }
    timing.storage += store_results(store, pending).await;
    timing
}

/// Results are stored in batches: one transaction (one disk sync) per batch, not per case.
const RESULT_BATCH: usize = 256;

async fn store_results(store: &SharedStore, rows: Vec<TestCaseResultRow>) -> Duration {
    let storing = std::time::Instant::now();
    if !rows.is_empty()
        && let Err(e) = blocking(store, move |s| s.insert_test_case_results(&rows)).await
    {
        tracing::error!(error = %e, "cannot store test case results");
    }
    storing.elapsed()
}

/// The recorded request and response of a stored test case, as the domain types.
pub fn recorded(case: &TestCase) -> (HttpRequest, HttpResponse) {
    (case.case.req.to_domain(), case.case.resp.to_domain())
}
