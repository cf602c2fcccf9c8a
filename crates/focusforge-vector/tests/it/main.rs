//! Vector tables on real Lance datasets on disk.

mod table;
