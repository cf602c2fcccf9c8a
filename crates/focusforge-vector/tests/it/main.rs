//! Vector tables on real Lance datasets on disk.

mod search;
mod table;
