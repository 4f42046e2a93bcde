//! The control plane: command line parsing and QMP.
