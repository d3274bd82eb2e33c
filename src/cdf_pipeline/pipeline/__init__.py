"""The silver job: one tenant run from raw files to published silver, quarantine and ops records."""
