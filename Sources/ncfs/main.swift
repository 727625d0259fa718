print("ncfs")
