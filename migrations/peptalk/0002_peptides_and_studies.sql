-- Migration number: 0002 	 peptides and their studies
CREATE TABLE peptides (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  slug TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  evidence_grade TEXT NOT NULL CHECK (evidence_grade IN ('high', 'moderate', 'low', 'insufficient')),
  last_pipeline_run TEXT,
  page_version INTEGER NOT NULL DEFAULT 1,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE studies (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  peptide_id INTEGER NOT NULL REFERENCES peptides(id),
  pmid TEXT NOT NULL,
  title TEXT NOT NULL,
  year INTEGER NOT NULL,
  summary TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE INDEX idx_studies_peptide_id ON studies(peptide_id);
