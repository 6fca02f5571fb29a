"""The registry of data sources: `data.source` in the config names one of these.

A source is a function `(data_cfg) -> KnowledgeStream | EditStream`.
"""

from lit_knowledge.registry import Registry

SOURCES: Registry = Registry("data source")
