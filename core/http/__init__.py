"""HTTP plumbing every service shares: RFC 9457 problem documents and the service skeleton."""
