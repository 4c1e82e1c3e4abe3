"""Tests of the INS domain rules."""
