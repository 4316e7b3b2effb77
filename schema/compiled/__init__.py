"""The compiled read path: a query operation served by one SQL statement whose
result PostgreSQL builds as JSON.

See schema/compiled/extension.py for how it is routed and when it falls back to the resolvers.
"""

from schema.compiled.extension import (
    CompiledReads,
    RawJSON,
    compiled_reads,
    compiled_reads_extension,
)

__all__ = ["CompiledReads", "RawJSON", "compiled_reads", "compiled_reads_extension"]
