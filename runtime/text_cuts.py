"""Where text may be cut into pieces, one rule set for whole text (`text_split`) and for text
still arriving (`text_stream.TextInput`), finest last: sentences, then clauses, then words.

Each pattern's match ends where a piece may end. A sentence ends at its punctuation (and closing
quotes) once the text goes on after it with a space, or at a line break; CJK punctuation ends it
at once. "3.14" and "e.g.," are not ends.
"""

import re

SENTENCE_CUT = re.compile(r"[.!?;…]+[\"'”’」』)]*(?=\s)|[。！？；]+[\"'”’」』)]*|\n+")
CLAUSE_CUT = re.compile(r"[,:]+(?=\s)|[，、：]")
WORD_CUT = re.compile(r"\S(?=\s)")
