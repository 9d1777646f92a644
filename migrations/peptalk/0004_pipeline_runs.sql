-- Migration number: 0004 	 pipeline runs
CREATE TABLE pipeline_runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  peptide_id INTEGER NOT NULL REFERENCES peptides(id),
  started_at TEXT NOT NULL,
  finished_at TEXT,
  status TEXT NOT NULL CHECK (status IN ('running', 'success', 'failed')),
  error TEXT
);
CREATE INDEX idx_pipeline_runs_started ON pipeline_runs(started_at);
