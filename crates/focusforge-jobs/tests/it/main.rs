//! The job queue against real backends: an SQLite file and a real
//! `redis-server`.

mod conformance;
mod crash;
mod cron;
mod support;
mod workers;
