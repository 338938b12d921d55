"""Start the web chat: `python app.py [--host H] [--port P] [--corpus-dir D] [--index-dir I]`.

Settings also come from QA_* environment variables (e.g. QA_AUTH="user:password").
"""

from qa.web import main

if __name__ == "__main__":
    main()
