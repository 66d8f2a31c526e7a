"""What a run says to people and to CI: the terminal, JSON, JUnit, Markdown, GitHub annotations,
`harness show`, history and compare, and the HTML report (`outputs.html`)."""
