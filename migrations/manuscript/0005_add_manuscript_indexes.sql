-- Migration number: 0005 	 the indexes of seed 000 "Slow Response Times"
CREATE INDEX IF NOT EXISTS idx_manuscripts_user_id ON manuscripts(author_id);
CREATE INDEX IF NOT EXISTS idx_manuscripts_created ON manuscripts(created_at);
CREATE INDEX IF NOT EXISTS idx_verification_tokens_user ON verification_tokens(user_id);
