-- Why a grant was made and which API key made it, kept on its transaction.
ALTER TABLE transactions ADD COLUMN reason TEXT;
ALTER TABLE transactions ADD COLUMN actor TEXT;
