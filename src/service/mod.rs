//! Running Riptide as a service: typed configuration with environment
//! overrides, structured logging.

pub mod config;
pub mod logging;
