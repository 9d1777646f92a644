-- Migration number: 0005 	 other names a peptide is searched by (pending: not in d1_migrations of the seeded history)
CREATE TABLE peptide_aliases (
  alias TEXT PRIMARY KEY,
  peptide_id INTEGER NOT NULL REFERENCES peptides(id)
);
CREATE INDEX idx_peptide_aliases_peptide_id ON peptide_aliases(peptide_id);
