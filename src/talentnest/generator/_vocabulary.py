"""Words a synthetic network is made of: names from many languages, roles, skills, places, sentences.

Lists run from common to rare: the generator draws from them with Zipf-like weights, so a few
names and skills are everywhere and the tail is rare, as in a real network.
"""

from __future__ import annotations

# (given names, family names) per language; Latin-script names keep their accents.
NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "es": (
        ("María", "José", "Lucía", "Javier", "Sofía", "Andrés", "Camila", "Martín", "Valentina", "Sebastián",
         "Ramón", "Inés", "Álvaro", "Begoña", "Íñigo", "Nuria", "Joaquín", "Ximena", "Tomás", "Rocío",
         "Ángela", "Óscar", "Ainhoa", "Jesús", "Concepción", "Héctor", "Úrsula", "Nicolás", "Adrián", "Paloma"),
        ("García", "Martínez", "López", "Sánchez", "Pérez", "Gómez", "Fernández", "Rodríguez", "Díaz", "Muñoz",
         "Jiménez", "Álvarez", "Romero", "Hernández", "Ruiz", "Núñez", "Peña", "Castaño", "Ibáñez", "Ordóñez",
         "Gutiérrez", "Benítez", "Vázquez", "Salazar", "Echeverría", "Zúñiga", "Cañizares", "Montaño"),
    ),
    "pt": (
        ("João", "Ana", "Gonçalo", "Beatriz", "Luís", "Inês", "Conceição", "Tiago", "Mariana", "Sebastião",
         "Leonor", "Caetano", "Lívia", "Estêvão", "Júlia", "Vitória", "Cauã", "Iara", "Rafaela", "Thiago"),
        ("Silva", "Santos", "Conceição", "Gonçalves", "Araújo", "Magalhães", "Simões", "Brandão", "Patrício",
         "Guimarães", "Falcão", "Assunção", "Estêves", "Damião", "Cardoso", "Rebelo", "Lopes", "Sequeira"),
    ),
    "fr": (
        ("Élodie", "Théo", "Chloé", "Léa", "Hélène", "Jérôme", "Zoé", "François", "Cécile", "Mathéo",
         "Anaïs", "Gaëlle", "Noël", "Loïc", "Maëlle", "Benoît", "Aurélien", "Célestine", "Amélie", "Clément"),
        ("Dubois", "Lefèvre", "Moreau", "Girard", "Bélanger", "Côté", "Lévesque", "Bérubé", "Gagné", "Mercier",
         "Rousseau", "Lemaître", "Faure", "Brûlé", "Boucher", "Chevalier", "Pâquet", "Géroux", "Hébert"),
    ),
    "de": (
        ("Jürgen", "Dörte", "Lukas", "Jörg", "Anja", "Björn", "Käthe", "Günter", "Lena", "Maximilian",
         "Sören", "Uwe", "Greta", "Jonas", "Hannah", "Götz", "Matthäus", "Liesl", "Friederike", "Ottmar"),
        ("Müller", "Schröder", "Groß", "Weiß", "Straße", "Köhler", "Schäfer", "Bäcker", "Fuß", "Krüger",
         "Möller", "Jäger", "Hoffmann", "Schmidt", "Zimmermann", "Lößner", "Strauß", "Öztürk", "Bär"),
    ),
    "pl": (
        ("Łukasz", "Małgorzata", "Paweł", "Agnieszka", "Wojciech", "Zofia", "Michał", "Ewa", "Jędrzej", "Żaneta",
         "Krzysztof", "Katarzyna", "Bartłomiej", "Grażyna", "Przemysław", "Jadwiga"),
        ("Kowalski", "Wiśniewska", "Wójcik", "Łukasiewicz", "Zieliński", "Szymańska", "Dąbrowski", "Kaźmierczak",
         "Lewandowska", "Przybył", "Żółkiewski", "Gałązka", "Ślusarczyk", "Mazur"),
    ),
    "cs": (
        ("Jiří", "Tereza", "Tomáš", "Kateřina", "Lukáš", "Zdeněk", "Barbora", "Přemysl", "Radka", "Vojtěch"),
        ("Novák", "Dvořák", "Černý", "Procházka", "Kučera", "Veselý", "Růžička", "Hájek", "Šimek", "Kříž"),
    ),
    "tr": (
        ("Ayşe", "Mehmet", "Zeynep", "Çağrı", "Gülşen", "Özge", "Barış", "İlkay", "Şule", "Doğan", "Ümit", "Ünal"),
        ("Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Öztürk", "Aydın", "Özdemir", "Arslan", "Doğan", "Ünal", "Güneş"),
    ),
    "nordic": (
        ("Søren", "Åsa", "Björk", "Ørjan", "Sigríður", "Þórdís", "Jónas", "Märta", "Eyþór", "Ragnhild",
         "Ástrós", "Kjærsti", "Håkon", "Solveig", "Guðrún"),
        ("Jørgensen", "Ångström", "Sigurðsson", "Þórhallsdóttir", "Nyström", "Bjørnstad", "Halldórsson",
         "Lindqvist", "Åkesson", "Kjærgaard", "Østergaard"),
    ),
    "hu": (
        ("Réka", "Ödön", "Zsófia", "Gergő", "Eszter", "Bálint", "Tünde", "Dávid", "Ágnes", "Lőrinc"),
        ("Nagy", "Kovács", "Tóth", "Szabó", "Horváth", "Varga", "Kiss", "Molnár", "Németh", "Fülöp", "Bíró"),
    ),
    "ro": (
        ("Ștefan", "Ioana", "Mihai", "Andreea", "Răzvan", "Bianca", "Tudor", "Oana", "Cătălin", "Ilinca"),
        ("Popescu", "Ionescu", "Rădulescu", "Constantinescu", "Stănescu", "Dumitrașcu", "Țurcanu", "Bălan"),
    ),
    "it": (
        ("Giulia", "Niccolò", "Francesca", "Lorenzo", "Chiara", "Mattia", "Aurora", "Nicolò", "Ludovica", "Pietro"),
        ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "De Luca", "D'Angelo"),
    ),
    "vi": (
        ("Nguyễn Thị", "Trần Văn", "Lê Minh", "Phạm Thu", "Hoàng Anh", "Đỗ Quang", "Võ Thanh", "Bùi Ngọc"),
        ("Hương", "Dũng", "Khoa", "Trang", "Tuấn", "Phương", "Hải", "Thảo", "Đức", "Hạnh"),
    ),
    "en": (
        ("James", "Olivia", "Liam", "Emma", "Noah", "Ava", "William", "Sophia", "Ethan", "Mia", "Oliver", "Grace",
         "Jack", "Chloe", "Daniel", "Ella", "Henry", "Zoë", "Samuel", "Nora", "Aidan", "Siobhán", "Seán", "Niamh"),
        ("Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Taylor", "Clarke",
         "O'Brien", "O'Connor", "MacLeod", "Walsh", "Murphy", "Thompson", "Evans", "Hughes", "Baker"),
    ),
    "el": (
        ("Σοφία", "Γιώργος", "Ελένη", "Δημήτρης", "Μαρία", "Νίκος", "Κατερίνα", "Αθηνά"),
        ("Παπαδόπουλος", "Οικονόμου", "Γεωργίου", "Νικολάου", "Παππάς", "Βασιλείου"),
    ),
    "in": (
        ("Aarav", "Priya", "Rohan", "Ananya", "Vikram", "Diya", "Arjun", "Kavya", "Ishaan", "Meera", "Saanvi"),
        ("Sharma", "Patel", "Iyer", "Reddy", "Nair", "Gupta", "Mehta", "Chatterjee", "Banerjee", "Krishnan"),
    ),
    "ng": (
        ("Chiamaka", "Oluwaseun", "Ngozi", "Chinedu", "Adaeze", "Babajide", "Folake", "Emeka", "Ifeoma", "Tunde"),
        ("Okafor", "Adeyemi", "Okonkwo", "Balogun", "Eze", "Nwosu", "Adebayo", "Ogunleye", "Obi"),
    ),
}  # fmt: skip
# How often each language's names appear (the rest of a member's profile is in English).
LANGUAGE_WEIGHTS = {
    "es": 14, "en": 14, "pt": 9, "fr": 9, "de": 9, "in": 8, "it": 6, "pl": 5, "tr": 5, "ng": 4,
    "nordic": 4, "vi": 3, "cs": 3, "hu": 2, "ro": 2, "el": 3,
}  # fmt: skip
# Romanised forms for usernames of names outside the Latin script.
GREEK_LATIN = {
    "Σοφία": "sofia", "Γιώργος": "giorgos", "Ελένη": "eleni", "Δημήτρης": "dimitris", "Μαρία": "maria",
    "Νίκος": "nikos", "Κατερίνα": "katerina", "Αθηνά": "athina", "Παπαδόπουλος": "papadopoulos",
    "Οικονόμου": "oikonomou", "Γεωργίου": "georgiou", "Νικολάου": "nikolaou", "Παππάς": "pappas",
    "Βασιλείου": "vasileiou",
}  # fmt: skip

# The first skills are the common ones: with the generator's weights, about one member in ten has Python.
SKILLS = (
    "Python", "JavaScript", "SQL", "Java", "TypeScript", "React", "AWS", "Docker", "Kubernetes", "Go",
    "Project Management", "Machine Learning", "Data Analysis", "C++", "Node.js", "Leadership", "Linux",
    "Git", "PostgreSQL", "C#", "Agile", "Excel", "Product Management", "Figma", "UX Design", "Rust",
    "Terraform", "Communication", "Kotlin", "Swift", "Azure", "GCP", "Django", "FastAPI", "Spring Boot",
    "Vue.js", "Angular", "GraphQL", "REST APIs", "Microservices", "CI/CD", "DevOps", "Scrum", "Tableau",
    "Power BI", "Pandas", "NumPy", "PyTorch", "TensorFlow", "Deep Learning", "NLP", "Computer Vision",
    "Statistics", "R", "Scala", "Spark", "Hadoop", "Kafka", "Redis", "MongoDB", "Elasticsearch", "SQLite",
    "MySQL", "Oracle", "SAP", "Salesforce", "Marketing", "SEO", "Content Strategy", "Copywriting", "Sales",
    "Negotiation", "Public Speaking", "Mentoring", "Hiring", "Recruiting", "Finance", "Accounting",
    "Financial Modeling", "Risk Management", "Compliance", "Cybersecurity", "Penetration Testing",
    "Network Engineering", "Cloud Architecture", "System Design", "Distributed Systems", "Embedded Systems",
    "FPGA", "Robotics", "Ruby", "Ruby on Rails", "PHP", "Laravel", "WordPress", "Elixir", "Erlang", "Haskell",
    "OCaml", "Clojure", "F#", "Julia", "MATLAB", "Fortran", "COBOL", "Perl", "Bash", "PowerShell", "Ansible",
    "Chef", "Puppet", "Prometheus", "Grafana", "Observability", "SRE", "Incident Response", "Unity",
    "Unreal Engine", "Game Design", "3D Modeling", "Blender", "Illustration", "Photography", "Video Editing",
    "Motion Design", "Branding", "Typography", "Accessibility", "Technical Writing", "Localization",
    "Customer Success", "Operations", "Supply Chain", "Logistics", "Procurement", "Lean", "Six Sigma",
    "Quality Assurance", "Test Automation", "Selenium", "Cypress", "Playwright", "Jest", "pytest", "Android",
    "iOS", "Flutter", "React Native", "WebAssembly", "WebGL", "Three.js", "D3.js", "Svelte", "Next.js",
    "Tailwind CSS", "HTML", "CSS", "Sass", "Webpack", "Vite", "Deno", "Bun", "gRPC", "Protocol Buffers",
    "OpenAPI", "OAuth", "Cryptography", "Blockchain", "Solidity", "Quantitative Analysis", "Econometrics",
    "Bioinformatics", "Genomics", "Chemistry", "Physics", "Mathematics", "Operations Research", "Optimization",
    "Simulation", "CAD", "SolidWorks", "AutoCAD", "Revit", "Civil Engineering", "Mechanical Engineering",
    "Electrical Engineering", "PCB Design", "Signal Processing", "Control Systems", "LabVIEW", "Zig", "Nim",
    "Crystal", "Lua", "Dart", "Groovy", "Prolog", "Lisp", "Assembly", "Verilog", "VHDL", "Teaching",
    "Coaching", "Event Planning", "Community Management", "Research", "User Research", "Service Design",
    "Design Systems", "Information Architecture", "Data Engineering", "dbt", "Airflow", "Snowflake",
    "BigQuery", "Databricks", "Looker", "ETL", "Data Governance", "MLOps", "LLMs", "Prompt Engineering",
    "Reinforcement Learning", "Recommender Systems", "Search", "Information Retrieval", "Ranking",
)  # fmt: skip
# Niche skills, each held by a few members in ten thousand.
RARE_SKILLS = (
    "APL", "Ada", "Smalltalk", "Forth", "Pascal", "Delphi", "ABAP", "Tcl", "Racket", "Idris", "Agda", "Coq",
    "TLA+", "Alloy", "Ladder Logic", "Modula-2", "Oberon", "Eiffel", "Miranda", "Standard ML", "Chapel",
    "Pony", "Io", "J", "K", "Q", "Datalog", "Mercury", "Icon", "SNOBOL", "Hack", "Vala", "Raku", "Befunge",
)  # fmt: skip
RARE_SKILL_WEIGHT = 0.02  # of the weight of the least common of SKILLS

ROLES = (
    "Software Engineer", "Data Scientist", "Product Manager", "Designer", "Backend Developer",
    "Frontend Developer", "Full-Stack Developer", "DevOps Engineer", "Site Reliability Engineer",
    "Data Engineer", "Machine Learning Engineer", "Engineering Manager", "CTO", "Founder", "Consultant",
    "Analyst", "Researcher", "Security Engineer", "Mobile Developer", "QA Engineer", "Technical Writer",
    "Recruiter", "Marketing Lead", "Sales Engineer", "Solutions Architect", "Student", "Teacher",
    "Game Developer", "Embedded Engineer", "Hardware Engineer", "UX Researcher", "Community Manager",
)  # fmt: skip
LEVELS = ("", "", "", "Senior ", "Lead ", "Junior ", "Principal ", "Staff ", "Freelance ", "Aspiring ")
COMPANIES = (
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries", "Wayne Enterprises", "Pied Piper",
    "Soylent", "Tyrell", "Cyberdyne", "Aperture", "Black Mesa", "Vandelay", "Wonka", "Oscorp", "Gringotts",
    "Monsters Inc", "Nakatomi", "Dunder Mifflin", "Los Pollos Hermanos", "Bluth Company", "Prestige Worldwide",
    "a startup", "a bank", "a hospital", "a university", "the government", "an agency", "a nonprofit",
)  # fmt: skip
CITIES = (
    "Bogotá", "São Paulo", "México City", "Madrid", "Barcelona", "Lisbon", "Paris", "Montréal", "Berlin",
    "München", "Zürich", "Kraków", "Praha", "İstanbul", "København", "Reykjavík", "Budapest", "București",
    "Milano", "Hà Nội", "London", "Dublin", "New York", "San Francisco", "Toronto", "Αθήνα", "Bengaluru",
    "Lagos", "Nairobi", "Medellín", "Córdoba", "Valparaíso", "Québec", "Malmö", "Tromsø", "Łódź", "Köln",
    "Genève", "Sevilla", "Málaga", "Curitiba", "Brasília", "Remote",
)  # fmt: skip
HEADLINES = (
    "{level}{role} at {company}",
    "{level}{role} · {skill} & {skill2}",
    "{role} | {skill}, {skill2}, {skill3}",
    "Building things with {skill} in {city}",
    "{level}{role} in {city}",
    "{role} who loves {skill}",
    "Helping teams ship with {skill} and {skill2}",
    "{level}{role} — {skill} enthusiast",
    "Ex-{company}, now {role}",
    "{role} at {company} ({city})",
)  # fmt: skip
BIOS = (
    "",
    "",
    "I like hard problems and simple code.",
    "Coffee, {skill} and long walks in {city}.",
    "Previously at {company}. Open to new opportunities.",
    "Writing about {skill} and {skill2} on weekends.",
    "Mentor, speaker and {skill} contributor.",
    "Learning something new every day.",
)  # fmt: skip
POST_OPENERS = (
    "Just shipped", "Today I learned", "Hot take:", "Thread on", "Looking for advice on", "Proud of the team:",
    "A small tip about", "Reading list for", "We are hiring for", "Notes from a talk on", "Debugging story:",
    "Three lessons from", "Unpopular opinion about", "Weekend project with", "Finally understood",
)  # fmt: skip
POST_MIDDLES = (
    "a new feature built with {skill}", "how {skill} handles edge cases", "migrating from {skill} to {skill2}",
    "why {skill} still matters", "testing {skill} code in production", "scaling {skill} to millions of users",
    "the hidden cost of {skill}", "pairing {skill} with {skill2}", "a bug that took three days",
    "what {company} taught me about {skill}", "onboarding new people to {skill}", "my first year as a {role}",
)  # fmt: skip
POST_CLOSERS = (
    "", "", "", "What do you think?", "Happy to share the slides.", "Details in the comments.",
    "Thanks to everyone who helped!", "More soon.", "Ask me anything.", "#{tag}", "#{tag} #{tag2}",
    "Would love feedback.", "🚀", "🎉", "Not sure this scales, though.", "Lesson learned.",
)  # fmt: skip
COMMENTS = (
    "Great post!", "Thanks for sharing.", "Totally agree.", "Interesting, tell me more.", "Congrats! 🎉",
    "We hit the same issue with {skill}.", "Have you tried {skill}?", "Saved for later.", "So true.",
    "Could you share the code?", "This is gold.", "Not sure I agree, but good points.", "+1", "Love it ❤️",
)  # fmt: skip
