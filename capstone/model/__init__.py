"""The chat model the capstone talks to: a real endpoint, or the offline one."""
