//! Integration tests: the `rask` binary as users run it, and results checked
//! against answers no one here computed.

mod across_hosts;
mod browser;
mod cli;
mod cluster;
mod dashboard;
mod dataframe;
mod exposure;
mod functions;
mod futures;
#[path = "../common/hosts.rs"]
mod hosts;
mod layers;
mod plans;
mod postgres;
#[path = "../common/processes.rs"]
mod processes;
mod remote;
mod repl;
mod s3;
mod shared_data;
mod support;
mod tpch;
