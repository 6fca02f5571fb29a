"""Parametric knowledge transfer (Zhong et al., "Seeking Neural Nuggets: Knowledge Transfer in Large Language
Models from a Parametric Perspective", arXiv 2310.11451).

- extraction.py  sensitivity, layer selection, dimension alignment, SVD into a LoRA init, and the control arms;
- method.py      the task on the world (facts only the teacher knows), the fine-tuning and its evaluation.
"""
