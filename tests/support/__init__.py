"""Helpers the tests share: test servers, fake data makers, repository paths."""
