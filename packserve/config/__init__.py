"""Model configuration: parse (pbtxt / yaml / json) -> normalize -> validate -> frozen ModelSpec."""
