"""Performance model: static problem features, the device table, speed of light, the cross-GPU latency
model, and the run budgets and timing log the sandbox takes from them (see the README's "Performance model").

Imports nothing heavy: each module is imported where it is used (the sandbox's supervisor never loads the
latency model unless it plans a GPU run).
"""
