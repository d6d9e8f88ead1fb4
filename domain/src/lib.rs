//! Domain logic shared by the proxy and the agent, all sans-IO (values in, values out):
//!
//! - [`http`]: the recorded HTTP exchange a test case holds;
//! - [`noise`]: noise rules (global, per test set, per test case) and record-time timestamp noise;
//! - [`compare`]: expected vs actual response comparison with noise, risk and category;
//! - [`keploy`]: the Keploy YAML interchange layout (tests, mocks, mappings);
//! - [`report`]: the test report model (Keploy report YAML) and JUnit XML.

pub mod compare;
pub mod http;
pub mod keploy;
pub mod mock;
pub mod noise;
pub mod report;
