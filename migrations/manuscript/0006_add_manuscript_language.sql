-- Migration number: 0006 	 manuscript language (pending: not in d1_migrations of the seeded history)
ALTER TABLE manuscripts ADD COLUMN language TEXT NOT NULL DEFAULT 'en';
CREATE INDEX IF NOT EXISTS idx_manuscripts_language ON manuscripts(language);
