"""Tests of the analysis package (records -> tables, figures, report)."""
