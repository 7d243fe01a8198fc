"""Rewards: rule-based and execution rewards, trainer adapters and the reward server (issue 3)."""
