-- Migration number: 0003 	 verification tokens (password reset, email verification)
CREATE TABLE verification_tokens (
  token TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users(id),
  token_type TEXT NOT NULL CHECK (token_type IN ('password_reset', 'email_verification')),
  expires_at TEXT NOT NULL,
  used INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL
);
