"""The Runloop API: the HTTP client, its errors and rate limit, decoding and polling — bytes in, API models out."""
