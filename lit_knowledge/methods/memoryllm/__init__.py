"""MemoryLLM (Wang et al., "MEMORYLLM: Towards Self-Updatable Large Language Models", arXiv 2402.04624).

- memory.py   the pool over any Llama-family model: read, write, update;
- training.py the memory module's training (a cached build), the paper's three regimes;
- method.py   the stream method: documents written in order, probes answered from memory.
"""
