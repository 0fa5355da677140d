"""Who may call: platform API clients (bearer tokens) and officer or auditor accounts."""
