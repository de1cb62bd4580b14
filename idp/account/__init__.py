"""Blueprint "account": self-service pages for the signed-in person."""
