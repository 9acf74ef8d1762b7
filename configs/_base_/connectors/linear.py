# LLaVA: one Linear layer per visual token.
connector = dict(type='LinearProjector')
