"""The agent runtime: runner processes executing durable agent runs on DBOS."""
