go("overlap-drop", "db", "query", {"sql": "DROP TABLE users"}, label=True)
go("overlap-email", "email", "send", {"to": "x@gmail.com", "body": "drop it"}, label=True)
go("email-disabled-detaction", "crm", "notes.add", {"note": "mail me at a@b.com"})
