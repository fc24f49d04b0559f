"""Trusted documents (persisted operations): the operations our own clients send, registered by hash.

The manifest (`trusted_documents/manifest.json`, setting TRUSTED_DOCUMENTS_MANIFEST) lists `.graphql` files
relative to itself. Each file is read once at start, then parsed, shape-checked, validated and its operations'
cost plans made once (root/limits.py keeps them for good); a document that does not pass is logged and not
registered. The cost of a request is still estimated with its variables (a connection's `first`).

A client may send a registered document by id instead of its text, in either convention:
- Apollo's automatic persisted queries: `extensions: {"persistedQuery": {"version": 1, "sha256Hash": "<hex>"}}`;
- GraphQL over HTTP's persisted documents: `"documentId": "sha256:<hex>"` (a bare hex digest is accepted too).
Over POST in the body; over GET as URL parameters (`extensions` as JSON). The id is the SHA-256 of the file's
text, or of its printed form (`graphql.print_ast`), which is what Apollo's persisted-query link hashes.
Sending the full text of a registered document is the same document.
"""

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from graphql import DocumentNode, GraphQLError, OperationDefinitionNode, OperationType, print_ast

from root.limits import CheckedDocument

logger = logging.getLogger("billing.graphql")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TrustedDocument:
    name: str  # the file, relative to the manifest
    text: str
    sha256: str  # of `text`: the id this document's answers are cached under
    queries: frozenset[str | None]  # operations that are queries, by name (None: the document's only one)

    def is_query(self, operation_name: str | None) -> bool:
        return operation_name in self.queries


def document_id(value: str) -> str | None:
    """The SHA-256 hex digest a `documentId` names (`sha256:<hex>` or bare hex), or None for another form."""
    value = value.strip().lower().removeprefix("sha256:")
    return value if _HEX_DIGEST.fullmatch(value) else None


def manifest_paths(manifest: Path) -> Iterator[Path]:
    data = json.loads(manifest.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("documents"), list):
        raise ValueError(f'{manifest}: expected {{"documents": ["<file>.graphql", ...]}}')
    for entry in data["documents"]:
        if not isinstance(entry, str):
            raise ValueError(f"{manifest}: every document is a path (a string), not {entry!r}")
        yield (manifest.parent / entry).resolve()


def _queries(checked: CheckedDocument) -> frozenset[str | None]:
    operations = [d for d in checked.document.definitions if isinstance(d, OperationDefinitionNode)]
    names: set[str | None] = {
        o.name.value for o in operations if o.operation is OperationType.QUERY and o.name is not None
    }
    if len(operations) == 1 and operations[0].operation is OperationType.QUERY:
        names.add(None)  # run without `operationName`
    return frozenset(names)


class TrustedDocuments:
    """The registered documents by every id they answer to."""

    def __init__(self, documents: Mapping[str, TrustedDocument]) -> None:
        self._by_id = dict(documents)

    def __len__(self) -> int:
        return len({document.sha256 for document in self._by_id.values()})

    def by_id(self, digest: str) -> TrustedDocument | None:
        return self._by_id.get(digest)

    def by_text(self, text: str) -> TrustedDocument | None:
        return self._by_id.get(sha256_hex(text))

    @classmethod
    def load(cls, manifest: Path, check: Callable[[str], CheckedDocument]) -> "TrustedDocuments":
        """Reads, checks (`check`: parse, limits, validation, made once and kept) and registers every document
        the manifest lists that passes them."""
        documents: dict[str, TrustedDocument] = {}
        for path in manifest_paths(manifest):
            text = path.read_text(encoding="utf-8")
            name = os.path.relpath(path, manifest.parent)
            try:
                checked = check(text)
            except GraphQLError as error:  # does not parse, or has more tokens than GRAPHQL_MAX_TOKENS
                checked = CheckedDocument(DocumentNode(definitions=()), [error])
            if checked.errors:
                # Settings tighter than our own clients' documents (or a schema they no longer fit): those
                # stay runnable as text, within the limits, like any other; a test holds the manifest valid.
                problems = "; ".join(error.message for error in checked.errors)
                logger.warning("trusted document %s is not registered: %s", name, problems)
                continue
            document = TrustedDocument(name, text, sha256_hex(text), _queries(checked))
            for digest in (document.sha256, sha256_hex(print_ast(checked.document))):
                documents[digest] = document
        return cls(documents)
