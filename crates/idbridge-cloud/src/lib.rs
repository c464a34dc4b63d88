//! The cloud directory (issue 3).
