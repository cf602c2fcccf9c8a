//! The cache backends against a real `redis-server`, including Redis being
//! killed (`SIGKILL`) and restarted under traffic.

mod resilient;
