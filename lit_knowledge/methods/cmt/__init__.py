"""CMT (on MAC): documents compressed into a memory bank read by a frozen LLM (memory.py, training.py, method.py)."""
