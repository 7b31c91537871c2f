"""Reference submissions scored with the same harness (`run_local.sh --submission DIR`)."""
